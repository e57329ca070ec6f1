"""A conversation's labels, merged instead of overwritten.

Chatwoot's `POST /conversations/{id}/labels` REPLACES the whole list
(swagger/paths/application/conversation/labels/create.yml: "this API would overwrite the
existing list of labels"), and the sellers label conversations too ("proposta-enviada",
"vip"). Writing only the bot's own label would wipe theirs, so every write is the list
Chatwoot has now (`GET .../labels`, swagger/paths/application/conversation/labels/
index.yml), with the bot's change applied to it.

Chatwoot keeps label titles in lower case (Label#title is downcased before validation),
so labels are compared without regard to case, and the spelling Chatwoot has is kept.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable


def clean_labels(labels: Iterable[object]) -> list[str]:
    """Non-empty strings, stripped, each once (first spelling kept), in order."""
    seen: set[str] = set()
    out: list[str] = []
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            continue
        text = label.strip()
        if text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
    return out


def merge_labels(
    current: Iterable[object], *, add: Iterable[object] = (), replace: Collection[str] = ()
) -> list[str]:
    """`current` without the labels of `replace` that are not being added, plus `add`.

    `replace` is the family the bot owns (its temperature words: one of them at a time);
    every other label, whoever set it, is kept where it was."""
    wanted = clean_labels(add)
    wanted_keys = {label.lower() for label in wanted}
    owned = {label.lower() for label in replace}
    kept = [
        label for label in clean_labels(current) if label.lower() not in owned or label.lower() in wanted_keys
    ]
    kept_keys = {label.lower() for label in kept}
    return kept + [label for label in wanted if label.lower() not in kept_keys]


def same_labels(left: Iterable[object], right: Iterable[object]) -> bool:
    """Equal as sets, case aside: nothing to write."""
    return {label.lower() for label in clean_labels(left)} == {label.lower() for label in clean_labels(right)}


__all__ = ["clean_labels", "merge_labels", "same_labels"]
