"""The judge's server options stay tell's EndpointOptions in all but their help.

``evaluate judge`` declares the endpoint options again (importing tell's settings would
load the format package into ``evaluate --help``) and hands its settings to
``tell.commands.endpoint_teller``, which reads them by tell's names. A name, type,
default or limit changed on one side only would break that hand-over or make the two
commands disagree; this says which.
"""

from __future__ import annotations

from storyreasoning.evaluate.settings import JudgeSettings
from storyreasoning.settings import settings_fields
from storyreasoning.tell.settings import EndpointOptions

#: What must agree (the help may differ: it speaks of the judge).
SAME = ("min", "max", "above", "url", "secret", "operational", "show_default", "cli")


def facts(field) -> dict:
    return {"type": field.type, "default": field.default, **{k: getattr(field.spec, k) for k in SAME}}


def test_the_judge_declares_every_endpoint_option_as_tell_does():
    judge = {f.name: f for f in settings_fields(JudgeSettings)}
    for tell in settings_fields(EndpointOptions):
        assert tell.name in judge, f"JudgeSettings lacks {tell.name}, which endpoint_teller reads"
        ours = judge[tell.name]
        assert facts(ours) == facts(tell), tell.name
        assert set(tell.spec.flags) <= set(ours.spec.flags), tell.name  # e.g. -e for --endpoint
        assert tell.flag in {ours.flag, *ours.spec.flags}, tell.name  # tell's flag works for the judge too
