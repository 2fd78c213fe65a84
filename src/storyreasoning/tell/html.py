"""One telling as a single self-contained HTML page.

:func:`render_html` draws every frame with the boxes of its chain-of-thought entities
(positioned in percent of the image's original pixel size, so they scale with the
page), the story under its frame with the tags coloured as in the original interface,
the CoT and narrative tables, the findings and the verdict, and the raw output when
the CoT or the story is missing. Hovering (or focusing, or clicking or tapping to pin) a
story span lights up the boxes of the ids it names in every frame; hovering a box lights
up its mentions. After a tap, or in a narrow window, a tooltip names what is lit, placed
clear of the frame and its boxes (a phone shows no ``title`` tooltips).

The page needs nothing from the network: images are embedded as ``data:`` URLs of the
files' own bytes, the style and the few lines of script are inline, and a
Content-Security-Policy admits only that script (by its hash) and ``data:`` images.
Everything that comes from the model is HTML-escaped, so a story containing
``<script>`` or quotes stays text. An image that is missing or unreadable becomes a
placeholder that says why.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoryReasoningError
from ..files import write_text_atomic
from ..format.cot import ImageAnalysis, id_kind
from ..format.diagnostics import CODES
from ..format.images import image_data_url, image_size, read_image_bytes
from ..format.story import Segment, Span

if TYPE_CHECKING:  # pragma: no cover
    from ..format.stream import Telling
    from ..format.validate import Verdict

# Entity kinds (from the id prefix) and the colour of their boxes.
KINDS = {
    "char": ("characters", "#4361ee"),
    "obj": ("objects", "#e76f00"),
    "bg": ("backgrounds", "#2a9d8f"),
    "lm": ("landmarks", "#b5179e"),
}
OTHER_KIND = ("other", "#6c757d")
# The tag colours of the original interface.
TAG_COLOURS = {"gdo": "#4361ee", "gda": "#4cc9f0", "gdl": "#f72585"}
TAG_NAMES = {"gdo": "entity", "gda": "action", "gdl": "location"}


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML elements and double- or single-quoted attributes."""
    return html.escape(str(value), quote=True)


def _pct(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") + "%"


# -- images ---------------------------------------------------------------------------------------


@dataclass
class Picture:
    """An image ready for the page: its data URL and size, or why it could not be read."""

    url: str | None = None
    size: tuple[int, int] | None = None
    error: str | None = None


def load_picture(image: Any) -> Picture:
    """Read a path, bytes, PIL image or :class:`~storyreasoning.data.Frame`; never raises."""
    if image is None:
        return Picture(error="no image was given")
    label = "the image bytes"
    try:
        if hasattr(image, "bytes") and callable(image.bytes) and hasattr(image, "open"):  # a data.Frame
            label = str(image.name)
            data: Any = image.bytes()
        elif isinstance(image, (str, Path)):
            label = str(image)
            data = read_image_bytes(image)
        elif isinstance(image, (bytes, bytearray, memoryview)):
            data = bytes(image)
        elif hasattr(image, "save") and hasattr(image, "size"):  # a PIL image
            data = image
        else:
            return Picture(
                error=f"a {type(image).__name__} is not an image (give a path, bytes or a PIL image)"
            )
    except StoryReasoningError as exc:  # a missing or unreadable file
        return Picture(error=str(exc))
    except OSError as exc:
        return Picture(error=f"{label} could not be read ({exc.strerror or exc})")
    try:
        size = image_size(data)
        url = image_data_url(data)
    except (StoryReasoningError, OSError, ValueError):
        return Picture(error=f"{label} is not a readable image; re-export it as PNG or JPEG")
    return Picture(url=url, size=size)


# -- boxes ----------------------------------------------------------------------------------------


def _kind(entity_id: str) -> tuple[str, str, str]:
    """``(css class, kind name, colour)`` of an entity id."""
    prefix = id_kind(entity_id)
    name, colour = KINDS.get(prefix or "", OTHER_KIND)
    return f"k-{prefix or 'other'}", name, colour


def _entity_name(row) -> str:
    name = getattr(row, "name", "") or row.description
    return name if len(name) <= 40 else name[:39] + "…"


def _boxes(analysis: ImageAnalysis, size: tuple[int, int] | None) -> tuple[list[str], list[str]]:
    """The box divs of one image's entities, and notes on the boxes that could not be drawn."""
    placed: list[tuple[int, str]] = []
    notes: list[str] = []
    for row in (*analysis.characters, *analysis.objects):
        label = f"{row.id} {_entity_name(row)}".strip()
        if row.box is None:
            written = f" ({row.box_text})" if row.box_text else ""
            notes.append(f"{row.id}: no usable box{written}")
            continue
        if size is None:
            notes.append(f"{row.id}: box {row.box} not drawn, the image size is unknown")
            continue
        width, height = size
        box = row.box
        if not box.is_proper:
            notes.append(f"{row.id}: box {box} is empty or inverted, not drawn")
            continue
        shown = box.clip(width, height)
        if not shown.is_proper:
            notes.append(f"{row.id}: box {box} lies outside the {width}x{height} image, not drawn")
            continue
        clipped = shown != box
        css, kind, _ = _kind(row.id)
        tip = f"{row.id} ({kind}): " + " – ".join(t for t in (getattr(row, "name", ""), row.description) if t)
        tip += f"\nbox {box} in a {width}x{height} image"
        if clipped:
            tip += f"\nreaches beyond the image; clipped to {shown}"
            notes.append(f"{row.id}: box {box} reaches beyond the {width}x{height} image, clipped")
        style = (
            f"left:{_pct(100 * shown.x1 / width)};top:{_pct(100 * shown.y1 / height)};"
            f"width:{_pct(100 * shown.width / width)};height:{_pct(100 * shown.height / height)}"
        )
        classes = f"box {css}" + (" clipped" if clipped else "")
        flag = '<span class="flag" aria-label="clipped">⚠</span>' if clipped else ""
        placed.append(
            (
                -shown.area,
                f'<div class="{classes}" style="{style}" data-id="{esc(row.id)}" data-ids="{esc(row.id)}" '
                f'data-box="{esc(box)}" title="{esc(tip)}" tabindex="0">'
                f'<span class="box-label">{flag}{esc(label)}</span></div>',
            )
        )
    # larger boxes first, so a small box drawn inside a large one stays on top, reachable
    placed.sort(key=lambda item: item[0])
    return [div for _, div in placed], notes


# -- story ----------------------------------------------------------------------------------------


def _span(span: Span, known: set[str] | None) -> str:
    ids = " ".join(span.ids)
    unknown = [i for i in span.ids if known is not None and i not in known]
    tip = f"{span.kind} ({TAG_NAMES.get(span.kind, span.kind)}): {ids or 'no ids'}"
    if unknown:
        tip += f"\nnot in the CoT: {' '.join(unknown)}"
    classes = f"tag {span.kind}" + (" unknown" if unknown or not span.ids else "")
    return f'<span class="{classes}" data-ids="{esc(ids)}" title="{esc(tip)}" tabindex="0">{esc(span.text)}</span>'


def _segment(segment: Segment, known: set[str] | None) -> str:
    parts = list(segment.parts)
    out: list[str] = []
    for i, part in enumerate(parts):
        if isinstance(part, Span):
            out.append(_span(part, known))
            continue
        text = part
        if i == 0:
            text = text.lstrip()
        if i == len(parts) - 1:
            text = text.rstrip()
        out.append(esc(text))
    note = "" if segment.closed else '<span class="note">(segment not closed)</span>'
    return f'<p class="story">{"".join(out)}{note}</p>'


# -- tables ---------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[tuple[list[str], str]], *, empty: str) -> str:
    """A table of escaped cells; each row is ``(cells, extra attributes already escaped)``."""
    if not rows:
        return f'<p class="empty">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        f"<tr{attrs}>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>" for cells, attrs in rows
    )
    # in a box of its own that scrolls sideways: on a phone a wide table would widen the page instead
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _box_cell(row) -> str:
    return str(row.box) if row.box is not None else (row.box_text or "-")


def _cot_tables(analysis: ImageAnalysis) -> str:
    def attrs(eid: str) -> str:
        return f' class="entity {_kind(eid)[0]}" data-ids="{esc(eid)}"'

    characters = [
        (
            [c.id, c.name, c.description, c.emotions, c.actions, c.narrative_function, _box_cell(c)],
            attrs(c.id),
        )
        for c in analysis.characters
    ]
    objects = [
        ([o.id, o.description, o.function, o.interaction, o.narrative_function, _box_cell(o)], attrs(o.id))
        for o in analysis.objects
    ]
    settings = [
        ([s.element, s.description, s.mood, s.time, s.narrative_function], "") for s in analysis.settings
    ]
    return (
        f'<div class="cot-image"><h3>Image {analysis.number}</h3>'
        "<h4>Characters</h4>"
        + _table(
            ["ID", "Name", "Description", "Emotions", "Actions", "Narrative function", "Box"],
            characters,
            empty="no characters",
        )
        + "<h4>Objects</h4>"
        + _table(
            ["ID", "Description", "Function", "Interaction", "Narrative function", "Box"],
            objects,
            empty="no objects",
        )
        + "<h4>Setting</h4>"
        + _table(
            ["Element", "Description", "Mood", "Time", "Narrative function"], settings, empty="no settings"
        )
        + "</div>"
    )


def _findings(verdict: Verdict) -> str:
    if verdict.well_structured:
        line = '<p class="verdict ok">well-structured</p>'
    else:
        n = len(verdict.reasons)
        line = f'<p class="verdict bad">not well-structured: {n} error{"s" if n != 1 else ""}</p>'
    if not verdict.findings:
        return line + '<p class="empty">No findings.</p>'
    items = "".join(
        f'<li class="sev-{esc(d.severity.value)}" title="{esc(CODES.get(d.code, ""))}">'
        f'<span class="where">{esc(f"line {d.line}" if d.line else "text")}</span> '
        f'<span class="sev">{esc(d.severity.value)}</span> <code>{esc(d.code)}</code> {esc(d.message)}</li>'
        for d in verdict.findings
    )
    return f'{line}<ul class="findings">{items}</ul>'


def _meta(meta: dict) -> str:
    if not meta:
        return ""
    usage = meta.get("usage") or {}
    bits = [str(meta[k]) for k in ("backend", "model") if meta.get(k)]
    if isinstance(usage.get("seconds"), (int, float)):
        bits.append(f"{usage['seconds']:.1f} s")
    if usage.get("completion_tokens"):
        bits.append(f"{usage['completion_tokens']} tokens")
    summary = " · ".join(bits) or "run details"
    detail = json.dumps(meta, ensure_ascii=False, indent=2, default=str)
    return f'<details class="meta"><summary>{esc(summary)}</summary><pre>{esc(detail)}</pre></details>'


# -- the page -------------------------------------------------------------------------------------

_STYLE = """
:root{--ink:#1d2330;--muted:#5c6475;--line:#dde1e8;--bg:#f7f8fa;--card:#fff}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1280px;margin:0 auto;padding:20px 24px 48px}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:8px 14px;margin-bottom:8px}
h1{font-size:1.45rem;margin:0}
h2{font-size:1.1rem;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:1rem;margin:16px 0 6px}
h4{font-size:.85rem;margin:10px 0 4px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.teller{color:var(--muted)}
.badge{display:inline-block;font-size:.75rem;font-weight:600;padding:1px 8px;border-radius:999px;vertical-align:middle}
.badge.baseline{background:#fff3cd;color:#7a5a00;border:1px solid #e0c060}
.badge.ok{background:#e3f5e8;color:#1b6b34}.badge.bad{background:#fde4e4;color:#a11b1b}
.legend{display:flex;flex-wrap:wrap;gap:6px 14px;font-size:.8rem;color:var(--muted);margin:6px 0 14px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.frames{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(330px,100%),1fr));gap:18px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;overflow:hidden}
.card h3{margin:0;padding:8px 12px;font-size:.9rem;border-bottom:1px solid var(--line)}
.frame{position:relative;width:100%;overflow:hidden;background:#e9ecf1}
.frame img{display:block;width:100%;height:100%}
.placeholder{position:absolute;inset:0;display:flex;align-items:center;justify-content:center;padding:16px;text-align:center;color:var(--muted);font-size:.85rem;background:repeating-linear-gradient(45deg,#eceff3,#eceff3 10px,#e4e7ec 10px,#e4e7ec 20px)}
.box{position:absolute;border:2px solid var(--c);background:color-mix(in srgb,var(--c) 8%,transparent);border-radius:2px;transition:opacity .12s,box-shadow .12s;outline:none}
.box-label{position:absolute;left:-2px;top:-2px;max-width:calc(100% + 4px);overflow:hidden;text-overflow:ellipsis;white-space:nowrap;background:var(--c);color:#fff;font-size:11px;line-height:15px;padding:0 4px;border-bottom-right-radius:3px}
.box.clipped{border-style:dashed}
.flag{margin-right:3px}
.k-char{--c:#4361ee}.k-obj{--c:#e76f00}.k-bg{--c:#2a9d8f}.k-lm{--c:#b5179e}.k-other{--c:#6c757d}
body.lit .box{opacity:.25}
body.lit .box.hl{opacity:1;border-width:3px;box-shadow:0 0 0 2px #fff,0 0 10px 2px var(--c);z-index:2}
.story{margin:0;padding:10px 12px 12px;white-space:pre-line}
.notes{margin:0;padding:0 12px 10px;font-size:.78rem;color:#8a4b00;list-style:none}
.tag{border-radius:3px;padding:0 1px;cursor:pointer;border-bottom:2px solid var(--t);background:color-mix(in srgb,var(--t) 12%,transparent);outline:none}
.tag.gdo{--t:#4361ee;color:#2a3fb8;font-weight:600}.tag.gda{--t:#4cc9f0;color:#11627e}.tag.gdl{--t:#f72585;color:#b0105a}
.tag.unknown{border-bottom-style:dashed}
.tag.hl{background:color-mix(in srgb,var(--t) 34%,#fff)}
tr.hl td,tbody tr.hl:nth-child(even) td{background:#fff2bf}
.note{color:#8a4b00;font-size:.8rem;margin-left:6px}
.outside{background:var(--card);border:1px dashed var(--line);border-radius:10px;margin-top:14px}
.outside h3{margin:0;padding:8px 12px;font-size:.9rem}
.wide{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.82rem;background:var(--card)}
th,td{border:1px solid var(--line);padding:4px 7px;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600}
tbody tr:nth-child(even) td{background:#fafbfc}
tr.entity td:first-child{font-weight:600;color:var(--c);white-space:nowrap}
tr.entity{cursor:pointer}
.empty{color:var(--muted);font-size:.85rem;margin:2px 0}
.verdict{font-weight:700;margin:4px 0 8px}.verdict.ok{color:#1b6b34}.verdict.bad{color:#a11b1b}
.findings{margin:0;padding:0;list-style:none;font-size:.85rem}
.findings li{padding:3px 0;border-bottom:1px solid var(--line)}
.findings .where{color:var(--muted);display:inline-block;min-width:60px}
.findings .sev{display:inline-block;min-width:62px;font-weight:600}
.sev-error .sev{color:#b00020}.sev-warning .sev{color:#9a6700}.sev-info .sev{color:var(--muted)}
pre{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px;overflow:auto;font-size:.8rem;white-space:pre-wrap;word-break:break-word}
details summary{cursor:pointer;color:var(--muted)}
.tooltip{position:fixed;z-index:10;max-width:min(340px,100% - 16px);padding:8px 11px;border-radius:8px;background:#1b2130;color:#e8ecf3;font-size:.8rem;line-height:1.45;white-space:pre-line;overflow-wrap:anywhere;overflow-y:auto;overscroll-behavior:contain;box-shadow:0 6px 22px rgba(10,14,24,.3);pointer-events:none}
.tooltip.tap{pointer-events:auto}
""".strip()

# Highlighting: every element with data-ids is a mention; boxes carry data-id. A mouse's hover,
# or focus, lights up what shares an id; a click or a tap pins it until the next one on it, or
# one elsewhere. Pointer events, not mouse ones: a phone makes up a mouseover for every tap.
# A phone shows no title tooltips, so after a tap (or on a narrow screen, where the story lies
# under its frame and one at the pointer would hide the boxes) a tooltip of the page's own says
# what the mention names, with the boxes it lights in its frame. It goes in the first band of
# the window that holds it whole and hides neither that frame nor those boxes (below or above
# the frame; beside, below or above the boxes), else the tallest, where it scrolls; its element's
# title waits meanwhile, so the browser shows no second one. A wide screen with a mouse keeps the
# browser's own tooltips.
_SCRIPT = """
(function(){
  var pinned=null,touch=false,about=null,E=8,narrow=matchMedia('(max-width:720px)');
  var tip=document.createElement('div');
  tip.className='tooltip';tip.setAttribute('role','tooltip');tip.hidden=true;document.body.appendChild(tip);
  function ids(el){return (el.getAttribute('data-ids')||'').split(/\\s+/).filter(Boolean);}
  function light(list){
    var want={};list.forEach(function(i){want[i]=1;});
    var any=list.length>0;
    document.body.classList.toggle('lit',any);
    document.querySelectorAll('[data-ids]').forEach(function(el){
      var hit=any&&ids(el).some(function(i){return want[i];});
      el.classList.toggle('hl',hit);
    });
  }
  function from(ev){var t=ev.target;return t&&t.closest?t.closest('[data-ids]'):null;}
  function frameOf(el){return el.closest('.frame')||(el.closest('.card')||el).querySelector('.frame');}
  function clamp(v,lo,hi){return Math.max(lo,Math.min(v,hi));}
  function place(){
    var s=tip.style,f=frameOf(about),F=(f||about).getBoundingClientRect(),k=null;
    s.maxHeight='';s.left=s.top='0px';
    var w=tip.offsetWidth,h=tip.offsetHeight,R=document.documentElement.clientWidth-E,B=innerHeight-E;
    (f?f.querySelectorAll('.box.hl,.box.hl .box-label'):[]).forEach(function(n){
      var r=n.getBoundingClientRect();
      k=k?{left:Math.min(k.left,r.left),top:Math.min(k.top,r.top),right:Math.max(k.right,r.right),bottom:Math.max(k.bottom,r.bottom)}:r;
    });
    if(k)k={left:Math.max(k.left,F.left),top:Math.max(k.top,F.top),right:Math.min(k.right,F.right),bottom:Math.min(k.bottom,F.bottom)};
    var bands=[[E,Math.max(E,F.bottom+E),R,B,1],[E,E,R,Math.min(B,F.top-E),2]];
    if(k)bands.push([Math.max(E,k.right+E),E,R,B,0],[E,E,Math.min(R,k.left-E),B,0],
      [E,Math.max(E,k.bottom+E),R,B,1],[E,E,R,Math.min(B,k.top-E),2]);
    var fits=bands.filter(function(b){return b[2]-b[0]>=w;});
    if(fits.length)bands=fits;
    var band=bands.filter(function(b){return b[3]-b[1]>=h;})[0];
    if(!band){
      band=bands.reduce(function(a,b){return b[3]-b[1]>a[3]-a[1]?b:a;});
      h=Math.max(48,band[3]-band[1]);s.maxHeight=h+'px';
    }
    var near=k||F;
    s.left=Math.max(E,clamp((near.left+near.right-w)/2,band[0],band[2]-w))+'px';
    s.top=Math.max(E,band[4]===1?band[1]:band[4]===2?band[3]-h:clamp(near.top,band[1],band[3]-h))+'px';
  }
  function shut(){
    if(about){about.setAttribute('title',about.getAttribute('data-tip'));about.removeAttribute('data-tip');}
    about=null;tip.hidden=true;
  }
  function open(el,byTap){
    shut();
    var title=el.getAttribute('title'),lines=[title],f=frameOf(el);
    if(f&&!el.classList.contains('box'))f.querySelectorAll('.box.hl').forEach(function(b){
      lines.push((b.getAttribute('title')||'').split('\\n')[0]);
    });
    about=el;el.setAttribute('data-tip',title);el.removeAttribute('title');
    tip.textContent=lines.join('\\n');tip.classList.toggle('tap',byTap);tip.hidden=false;place();
  }
  function show(el,how){
    light(el?ids(el):[]);
    if(el&&(el===about||el.hasAttribute('title'))&&(how==='tap'||narrow.matches))open(el,how==='tap');
    else shut();
  }
  document.addEventListener('pointerover',function(ev){if(ev.pointerType==='mouse'&&!pinned)show(from(ev),'mouse');});
  document.addEventListener('pointerout',function(ev){if(ev.pointerType==='mouse'&&!pinned&&from(ev))show(null);});
  document.addEventListener('focusin',function(ev){if(!pinned)show(from(ev),'focus');});
  document.addEventListener('focusout',function(ev){if(!pinned&&from(ev))show(null);});
  document.addEventListener('pointerdown',function(ev){touch=ev.pointerType!=='mouse';},true);
  document.addEventListener('click',function(ev){
    var el=from(ev);
    if(!el||el===pinned){pinned=null;show(touch?null:el,'mouse');return;}
    pinned=el;show(el,touch?'tap':'mouse');
  });
  function again(){if(about)place();}
  addEventListener('scroll',again,{capture:true,passive:true});
  addEventListener('resize',again);
})();
""".strip()


def _script_hash() -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")


def _legend() -> str:
    kinds = "".join(f'<span><i style="background:{c}"></i>{esc(n)}</span>' for n, c in KINDS.values())
    tags = "".join(
        f'<span><i style="background:{c}"></i>&lt;{t}&gt; {esc(TAG_NAMES[t])}</span>'
        for t, c in TAG_COLOURS.items()
    )
    return f'<div class="legend"><strong>boxes</strong>{kinds}<strong>story</strong>{tags}</div>'


def _frame_card(number: int, picture: Picture, analysis: ImageAnalysis | None, segments, known) -> str:
    size = picture.size
    ratio = f"aspect-ratio:{size[0]}/{size[1]}" if size else "aspect-ratio:4/3"
    inner = ""
    if picture.url is not None and size is not None:
        inner = f'<img src="{esc(picture.url)}" alt="Image {number}" width="{size[0]}" height="{size[1]}">'
    else:
        inner = f'<div class="placeholder">Image {number}: {esc(picture.error or "no image")}</div>'
    divs, notes = _boxes(analysis, size) if analysis is not None else ([], [])
    if analysis is None:
        notes = ["no chain-of-thought section for this image"]
    figure = f'<div class="frame" style="{ratio}" data-image="{number}">{inner}{"".join(divs)}</div>'
    story = "".join(_segment(s, known) for s in segments) or '<p class="story empty">no story segment</p>'
    note_list = "".join(f"<li>{esc(n)}</li>" for n in notes)
    note_html = f'<ul class="notes">{note_list}</ul>' if notes else ""
    return f'<article class="card" id="frame-{number}"><h3>Image {number}</h3>{figure}{story}{note_html}</article>'


def render_html(
    telling: Telling,
    images: list | tuple = (),
    *,
    title: str,
    teller_label: str | None = None,
    image_sizes: list[tuple[int, int] | None] | None = None,
) -> str:
    """The page for one telling, as a string.

    ``images`` are the story's frames in order (paths, bytes, PIL images or
    :class:`~storyreasoning.data.Frame`); an unreadable one becomes a placeholder.
    ``image_sizes`` (``(width, height)`` per image) stands in for an image that cannot
    be read, so its boxes can still be drawn; a readable image uses its own size.
    """
    images = list(images)
    if image_sizes is not None and len(image_sizes) != len(images):
        raise ValueError(f"{len(image_sizes)} image sizes for {len(images)} images")
    pictures = [load_picture(image) for image in images]
    for i, picture in enumerate(pictures):
        if picture.size is None and image_sizes is not None and image_sizes[i] is not None:
            w, h = image_sizes[i]
            if w > 0 and h > 0:
                picture.size = (int(w), int(h))
    sizes = [p.size for p in pictures]
    if images and all(s is not None for s in sizes):
        verdict = telling.validate(image_sizes=sizes)
    else:
        verdict = telling.validate(n_images=len(images) or None)

    cot, story = telling.cot, telling.story
    known = cot.entity_ids() if cot is not None else None
    by_number: dict[int, list[Segment]] = {}
    outside: list[Segment] = []
    for segment in story.segments if story is not None else []:
        if segment.image is None:
            outside.append(segment)
        else:
            by_number.setdefault(segment.image, []).append(segment)
    numbers = set(range(1, len(images) + 1)) | set(by_number)
    numbers |= {a.number for a in cot.images} if cot is not None else set()

    cards = []
    for number in sorted(numbers):
        picture = (
            pictures[number - 1] if 1 <= number <= len(pictures) else Picture(error="no image was given")
        )
        analysis = cot.image(number) if cot is not None else None
        cards.append(_frame_card(number, picture, analysis, by_number.get(number, []), known))

    badges = ""
    if teller_label and "baseline" in teller_label.lower():
        badges += '<span class="badge baseline" title="no model weights: a pipeline baseline">baseline</span>'
    badges += (
        '<span class="badge ok">well-structured</span>'
        if verdict.well_structured
        else '<span class="badge bad">not well-structured</span>'
    )
    teller = f'<span class="teller">{esc(teller_label)}</span>' if teller_label else ""

    body: list[str] = [
        f"<header><h1>{esc(title)}</h1>{teller}{badges}</header>",
        _meta(telling.meta),
        _legend(),
        f'<section class="frames">{"".join(cards)}</section>',
    ]
    if outside:
        text = "".join(_segment(s, known) for s in outside)
        body.append(f'<section class="outside"><h3>Story text outside any image</h3>{text}</section>')
    if story is None:
        body.append('<p class="empty">The output has no grounded story.</p>')

    body.append("<h2>Chain of thought</h2>")
    if cot is None:
        body.append('<p class="empty">The output has no chain-of-thought.</p>')
    else:
        body.extend(_cot_tables(a) for a in cot.images)
        body.append("<h3>Narrative structure</h3>")
        if cot.narrative is None:
            body.append('<p class="empty">missing</p>')
        else:
            rows = [([r.phase, r.description, r.key_events, r.images_text], "") for r in cot.narrative]
            body.append(_table(["Phase", "Description", "Key events", "Images"], rows, empty="(empty)"))

    body.append("<h2>Findings</h2>")
    body.append(_findings(verdict))
    malformed = cot is None or story is None
    body.append(
        f'<h2>Raw output</h2><details class="raw"{" open" if malformed else ""}>'
        f"<summary>{len(telling.raw)} characters as the teller wrote them</summary>"
        f'<pre class="raw-text">{esc(telling.raw)}</pre></details>'
    )

    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src '{_script_hash()}'"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><main>{''.join(body)}</main><script>{_SCRIPT}</script></body></html>\n"
    )


def write_html(
    path: str | Path,
    telling: Telling,
    images: list | tuple = (),
    *,
    title: str,
    teller_label: str | None = None,
) -> Path:
    """Write :func:`render_html`'s page to ``path`` atomically (a temporary file, then a rename)."""
    path = Path(path)
    page = render_html(telling, images, title=title, teller_label=teller_label)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, page)
