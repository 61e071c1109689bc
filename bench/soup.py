"""Would the average of several seeds' weights (a uniform "model soup") beat each seed alone?

Wortsman et al., "Model soups", ICML 2022: networks fine-tuned from the same pretrained weights with the same
recipe often lie in one basin, so the element-wise mean of their weights (batch-norm statistics included) is a
single network, as fast as one, that can be more accurate than each. Our pretrained seeds share the ImageNet
backbone and their heads start from the same frozen-backbone warm-up problem, so the question is worth a
measurement. For each task this script evaluates, on the real validation and test splits, every given seed, their
uniform soup and (for reference, not servable as one network) the mean of their probabilities; each with its own
temperature fitted on validation. Adoption would be decided on validation only.

Usage::

    uv run python bench/soup.py runs/gpu/pneumoniamnist_mobilenet_v2_224.json \
        runs/gpu/pneumoniamnist_mobilenet_v2_224_seed2.json [more specs of the same task and architecture]

Add ``--save DIR`` to write the soup itself (float16 safetensors and a spec that names its members and their
sha256), ready for ``medimg finalise`` (temperature, test report on the real images) and ``medimg fit-gate``.

Prints one JSON line; cost on 2 CPU threads about 1 minute per model and 1,000 images at 224 px.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tta_mean import fit_t, scores  # bench/ is the script's folder

from medimg.models import load_model
from medimg.models.weights import save_weights
from medimg.predict import softmax
from medimg.preprocess import normalise_batch
from medimg.spec import spec_task
from medimg.training.tasks import load_task_split


def soup_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating-point tensors (integer ones, e.g. BN's batch counter, from the first).

    Parameters
    ----------
    states : list of dict
        ``state_dict()`` of networks of one architecture (same keys and shapes).

    Returns
    -------
    dict
        The soup's state dict, in the first network's dtypes.

    Raises
    ------
    ValueError
        The state dicts do not share keys and shapes.
    """
    keys = states[0].keys()
    if any(s.keys() != keys or any(s[k].shape != states[0][k].shape for k in keys) for s in states[1:]):
        raise ValueError("The networks do not share one architecture (keys or shapes differ).")
    return {k: (torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype)
                if states[0][k].is_floating_point() else states[0][k].clone()) for k in keys}


def logits_of(net: torch.nn.Module, x: torch.Tensor, batch: int = 64) -> np.ndarray:
    """(N, K) float32 logits of ``net`` on normalised input ``x`` (N, C, H, W)."""
    with torch.inference_mode():
        return torch.cat([net(x[i:i + batch]).float() for i in range(0, len(x), batch)]).numpy()


def main() -> None:
    """Print the seeds, their soup and their probability ensemble on validation and test (one JSON line)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("specs", nargs="+", type=Path)
    p.add_argument("--save", type=Path, default=None,
                   help="also write the soup (float16 safetensors + spec named after the first spec) into this folder; "
                        "then medimg finalise and medimg fit-gate on it")
    a = p.parse_args()
    loaded = [load_model(s, device="cpu") for s in a.specs]
    spec = loaded[0][1]
    if any(sp.architecture != spec.architecture or sp.preprocess != spec.preprocess
           or spec_task(sp) != spec_task(spec) for _, sp in loaded):
        raise SystemExit("All specs must share task, architecture and preprocessing.")
    soup = load_model(a.specs[0], device="cpu")[0]
    soup.load_state_dict(soup_state([net.state_dict() for net, _ in loaded]))
    soup.eval()
    pp = spec.preprocess
    data = {split: load_task_split(spec_task(spec), split, pp, None) for split in ("val", "test")}
    x = {split: normalise_batch(torch.as_tensor(d.x), pp) for split, d in data.items()}
    y = {split: d.y.numpy() for split, d in data.items()}
    nets = {sp.name: net for net, sp in loaded} | {"soup": soup}
    logits = {name: {split: logits_of(net, x[split]) for split in x} for name, net in nets.items()}
    out: dict[str, object] = {"task": spec_task(spec), "models": [sp.name for _, sp in loaded]}
    for name, lg in logits.items():
        t = fit_t(lg["val"][None], y["val"])
        out[name] = {split: scores(softmax(lg[split], t), y[split]) for split in ("val", "test")}
    seeds = [n for n in logits if n != "soup"]
    temps = {n: fit_t(logits[n]["val"][None], y["val"]) for n in seeds}
    out["probability_mean"] = {split: scores(np.mean([softmax(logits[n][split], temps[n]) for n in seeds], 0),
                                             y[split]) for split in ("val", "test")}
    if a.save is not None:
        training = dict(spec.training) | {
            "command": "uv run python bench/soup.py " + " ".join(str(x) for x in a.specs) + f" --save {a.save}",
            "soup": {"members": [sp.name for _, sp in loaded], "member_sha256": [sp.sha256 for _, sp in loaded],
                     "member_seeds": [sp.training.get("seed") for _, sp in loaded],
                     "source": "uniform weight soup, Wortsman et al., ICML 2022"}}
        written = save_weights(soup, spec.replace(training=training), a.save, half=True)
        out["saved"] = str(a.save / f"{written.name}.json")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
