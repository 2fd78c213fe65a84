"""The supervised loss computed only where something is learned.

A causal language model's own loss projects every position onto the whole vocabulary
(152k entries for Qwen2.5-VL) and upcasts those logits to float32 before the
cross-entropy: at 32k tokens that is tens of GiB, almost all of it for image and prompt
positions whose labels are masked. :func:`answer_loss` asks the model for the logits of
the learned positions only (transformers' ``logits_to_keep`` with a boolean mask, applied
before the LM head), so the memory of the logits follows the answer, not the story.

The value is the model's own loss: the sum of the token cross-entropies divided by the
number of learned tokens of the whole optimiser step (``num_items_in_batch``, summed over
gradient accumulation and processes by the Trainer), or by the batch's own count when
the Trainer gives none; :class:`AnswerLossTrainer` applies the same cross-process scaling
as ``Trainer.compute_loss``, so one process with accumulation and several processes
give the same gradients. ``tests/train/test_sft.py`` checks value and gradients against
the model's own loss.

With Liger kernels (``--liger``), the model's own loss is used instead: their fused
linear cross-entropy never materialises the logits at all.
"""

from __future__ import annotations

from typing import Any

from .collate import IGNORE


def answer_loss(model: Any, inputs: dict, num_items_in_batch: Any = None):
    """``(loss, outputs)``: the next-token loss on learned positions, logits computed only there."""
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    rest = {k: v for k, v in inputs.items() if k != "labels"}
    learned = labels[:, 1:] != IGNORE  # position t predicts token t + 1
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = learned
    outputs = model(**rest, logits_to_keep=keep, use_cache=False)
    logits = outputs.logits.reshape(-1, outputs.logits.shape[-1])  # (learned tokens, vocabulary)
    targets = labels[:, 1:][learned]
    loss = F.cross_entropy(logits.float(), targets, reduction="sum")
    if num_items_in_batch is None:
        return loss / max(int(targets.numel()), 1), outputs
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch, outputs


def answer_loss_trainer(transformers):
    """A ``transformers.Trainer`` whose loss is :func:`answer_loss` (the class is made on demand)."""

    class AnswerLossTrainer(transformers.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = answer_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                # as Trainer.compute_loss: the count spans every process, and DDP averages gradients
                loss = loss * (self.accelerator.num_processes if self.args.n_gpu <= 1 else self.args.n_gpu)
            return (loss, outputs) if return_outputs else loss

    return AnswerLossTrainer


__all__ = ["answer_loss", "answer_loss_trainer"]
