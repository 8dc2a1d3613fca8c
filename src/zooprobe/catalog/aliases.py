"""Aliases: the same pretrained weights listed by two sources, linked after every sync.

Two rules, each recorded with its reason, both symmetric:

- **Same file.** Two entries of different sources whose ``weights_url`` is the same URL hold the
  same file (torchvision's URLs even carry a prefix of the file's SHA-256). This links timm's
  ``regnetx_004_tv.tv2_in1k`` to torchvision's ``regnet_x_400mf.IMAGENET1K_V2`` although the
  architecture names differ.
- **timm's torchvision tags.** timm tags weights it took from torchvision ``tv_in1k`` (torchvision's
  ``IMAGENET1K_V1``) and ``tv2_in1k`` (``IMAGENET1K_V2``); ``timm:<arch>.tv_in1k`` is linked to
  ``torchvision:<arch>.IMAGENET1K_V1`` when torchvision lists an architecture of that exact name.
  timm re-hosts some of these files without their original URL (the VGGs), so the tag is the proof.
"""

from __future__ import annotations

import sqlite3

TIMM_TORCHVISION_TAGS: dict[str, str] = {"tv_in1k": "IMAGENET1K_V1", "tv2_in1k": "IMAGENET1K_V2"}


def derive_aliases(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """Every (id, alias id, reason) the rules above find among the stored entries, in both directions."""
    links: dict[tuple[str, str], str] = {}
    same_file = db.execute(
        "SELECT a.id, b.id, a.weights_url FROM entries a JOIN entries b"
        " ON b.weights_url = a.weights_url AND b.source != a.source"
        " WHERE a.weights_url IS NOT NULL"
    )
    for left, right, url in same_file:
        links[(left, right)] = f"same weights file {url}"
    for tag, weights in TIMM_TORCHVISION_TAGS.items():
        tagged = db.execute(
            "SELECT t.id, v.id FROM entries t JOIN entries v"
            " ON v.id = 'torchvision:' || t.architecture || '.' || ?"
            " WHERE t.source = 'timm' AND t.name = t.architecture || '.' || ?",
            (weights, tag),
        )
        for timm_id, tv_id in tagged:
            reason = f"timm tag '{tag}' names torchvision's {weights} weights of the same architecture"
            links.setdefault((timm_id, tv_id), reason)
            links.setdefault((tv_id, timm_id), reason)
    return [(left, right, why) for (left, right), why in sorted(links.items())]
