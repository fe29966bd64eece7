"""Phrasing of programs: noun phrases, predicates and question frames with synonyms.

A program becomes a `Phrase` (head noun, predicate, full noun phrase); a frame of the sample's
reasoning category turns it into a question, with the viewpoint of a directional relation put
before or after it. Synonyms and frames are drawn at random, so one program can be asked in
several ways; answers use the first synonym so they stay canonical.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

NOUNS: dict[str, tuple[str, ...]] = {
    "chair": ("chair",),
    "stool": ("stool",),
    "table": ("table",),
    "desk": ("desk",),
    "bed": ("bed",),
    "sofa": ("sofa", "couch"),
    "cabinet": ("cabinet", "cupboard"),
    "shelf": ("shelf", "bookshelf"),
    "lamp": ("lamp",),
    "monitor": ("monitor", "computer monitor"),
    "tv": ("TV", "television"),
    "plant": ("plant", "potted plant"),
    "trash_can": ("trash can", "bin", "wastebasket"),
    "box": ("box",),
    "cup": ("cup", "mug"),
    "bottle": ("bottle",),
    "window": ("window",),
    "door": ("door",),
}


@dataclass(frozen=True)
class FunctionWords:
    verbs: tuple[str, ...]  # "I want to ... near the desk"
    somethings: tuple[str, ...]  # "Find ... near the desk"
    head: str  # "Which ... is closest to the door?"
    heads: str


FUNCTION_WORDS: dict[str, FunctionWords] = {
    "sit": FunctionWords(
        ("sit down", "take a seat"), ("something to sit on", "a place to sit"), "seat", "seats"
    ),
    "sleep": FunctionWords(
        ("sleep", "lie down"),
        ("something to sleep on", "a place to lie down"),
        "place to sleep",
        "places to sleep",
    ),
    "put_things_on": FunctionWords(
        ("put my things down", "set down a tray"),
        ("a surface to put things on", "something to put things on"),
        "surface to put things on",
        "surfaces to put things on",
    ),
    "store_things": FunctionWords(
        ("store my things", "put some things away"),
        ("something to store things in", "somewhere to keep my stuff"),
        "place to store things",
        "places to store things",
    ),
    "light": FunctionWords(
        ("get more light", "turn on a light"),
        ("something that gives light",),
        "light source",
        "light sources",
    ),
    "watch": FunctionWords(
        ("watch a video", "look at a screen"),
        ("something to watch videos on",),
        "screen",
        "screens",
    ),
    "throw_away": FunctionWords(
        ("throw away some trash", "get rid of rubbish"),
        ("something to throw trash into", "a place for rubbish"),
        "place for trash",
        "places for trash",
    ),
    "drink_from": FunctionWords(
        ("have a drink", "drink something"),
        ("something to drink from",),
        "drinking vessel",
        "drinking vessels",
    ),
}

RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "near": ("near", "next to", "close to", "beside", "by"),
    "far_from": ("far from", "far away from", "a long way from"),
    "on": ("on", "on top of", "standing on"),
    "under": ("under", "underneath", "below"),
    "left_of": ("left of", "to the left of", "on the left side of"),
    "right_of": ("right of", "to the right of", "on the right side of"),
    "in_front_of": ("in front of",),
    "behind": ("behind",),
    "between": ("between",),
}

SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "largest": ("largest", "biggest"),
    "smallest": ("smallest", "most compact"),
    "tallest": ("tallest",),
    "shortest": ("shortest", "lowest"),
}
# "Tallest" reads wrong for things standing on furniture at different heights; their measure
# (the top above the floor) is how high they reach.
RAISED_SIZE_WORDS = {"tallest": ("highest", "topmost"), "shortest": ("lowest",)}
DISTANCE_WORDS = {
    "closest": ("closest to", "nearest to", "nearest"),
    "farthest": ("farthest from", "furthest from", "most distant from"),
}

# Viewpoint kind -> (prefixes, suffixes); a suffix carries its own leading punctuation.
VIEWPOINT_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "door_to_window": (
        ("Standing at the door facing the window", "From the door, looking towards the window"),
        (
            ", seen from the door looking at the window",
            " when you stand at the door facing the window",
        ),
    ),
    "window_to_door": (
        ("Standing at the window facing the door", "From the window, looking towards the door"),
        (
            ", seen from the window looking at the door",
            " when you stand by the window facing the door",
        ),
    ),
    "door_inward": (
        ("Standing in the doorway facing into the room", "As you come in through the door"),
        (", seen from the doorway", " when you enter through the door"),
    ),
    "window_back": (
        ("Standing with your back to the window", "With the window behind you"),
        (", with your back to the window", " when you stand with your back to the window"),
    ),
}

# {head} singular head ("red chair"), {heads} its plural, {pred} what follows "is", {np} the
# full noun phrase without article.
GENERIC_FRAMES = (
    "Which {head} is {pred}?",
    "Find the {np}.",
    "Point me to the {np}.",
    "I need the {np}.",
    "Show me the {np}.",
    "Can you segment the {np}?",
    "Where is the {np}?",
    "Of all the {heads}, which one is {pred}?",
    "I'm looking for the {head} that is {pred}.",
)
# {something} an indefinite function phrase, {verb} an activity, {where} a relation phrase.
AFFORDANCE_RELATION_FRAMES = (
    "Find {something} {where}.",
    "I want to {verb} {where}. What can I use?",
    "Is there {something} {where}? Show me.",
    "Where can I {verb} {where}?",
)
AFFORDANCE_SUPERLATIVE_FRAMES = (
    "Find the {np}.",
    "I want to {verb}: which {head} is {pred}?",
    "Show me the {np}.",
    "Which {head} is {pred}?",
)
AFFORDANCE_FUNCTION_FRAMES = (
    "Where can I {verb}?",
    "Find {something}.",
    "I need {something}. Point me to it.",
    "Show me {something} in this room.",
)


def plural(noun: str) -> str:
    if noun.endswith("shelf"):
        return noun[:-1] + "ves"
    if noun.endswith(("sh", "ch", "x")):
        return noun + "es"
    return noun + "s"


def _indefinite(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def color_predicate(category: str, color: str) -> str:
    """What "Which plant is ...?" asks about a color: "red", "in a white pot"."""
    return f"in {_indefinite(color + ' pot')}" if category == "plant" else color


def described(category: str, color: str, noun: str) -> str:
    """`noun` (of `category`) with its color: "red chair", "plant in an orange pot"."""
    return (
        f"{noun} {color_predicate(category, color)}" if category == "plant" else f"{color} {noun}"
    )


@dataclass(frozen=True)
class Phrase:
    head: str
    heads: str
    pred: str
    np: str


class Phraser:
    """Builds phrases of programs. `count(program)` is how many objects a program selects,
    `raised(of_program)` whether a height superlative compares things standing on furniture,
    and `pick` draws a synonym (index 0 is canonical)."""

    def __init__(
        self,
        count: Callable[[dict], int],
        raised: Callable[[dict], bool],
        pick: Callable[[tuple[str, ...]], str],
    ) -> None:
        self.count, self.raised, self.pick = count, raised, pick

    def phrase(self, program: dict) -> Phrase:
        kind = program["type"]
        if kind == "color":
            # Asked about by its color: "Which chair is red?", "Find the red chair."
            noun = self.pick(NOUNS[program["category"]])
            pred = color_predicate(program["category"], program["color"])
            np_ = described(program["category"], program["color"], noun)
            return Phrase(noun, plural(noun), pred, np_)
        if kind in ("category", "function"):
            head = self._head(program)
            return Phrase(head, self._plural_head(program), "", head)
        of = self.phrase(program["of"])
        if kind == "relation":
            where = self.where(program)
            return Phrase(of.head, of.heads, where, f"{of.head} {where}")
        measure = program["measure"]
        if measure in DISTANCE_WORDS:
            pred = f"{self.pick(DISTANCE_WORDS[measure])} {self.reference(program['reference'])}"
            return Phrase(of.head, of.heads, pred, f"{of.head} {pred}")
        words = SIZE_WORDS[measure]
        if measure in RAISED_SIZE_WORDS and self.raised(program["of"]):
            words = RAISED_SIZE_WORDS[measure]
        word = self.pick(words)
        return Phrase(of.head, of.heads, f"the {word}", f"{word} {of.head}")

    def where(self, program: dict) -> str:
        """The relation phrase of a relation program: "to the left of the bed"."""
        words = self.pick(RELATION_WORDS[program["relation"]])
        return f"{words} {self.reference(program['reference'])}"

    def reference(self, reference: dict | list) -> str:
        """A definite noun phrase for what a reference selects (one object, or two)."""
        if isinstance(reference, list):
            return " and ".join(self.reference(part) for part in reference)
        if self.count(reference) == 2:
            return f"the two {self._plural_head(reference)}"
        return f"the {self.phrase(reference).np}"

    def _head(self, program: dict) -> str:
        if program["type"] == "function":
            return FUNCTION_WORDS[program["function"]].head
        return self.pick(NOUNS[program["category"]])

    def _plural_head(self, program: dict) -> str:
        if program["type"] == "function":
            return FUNCTION_WORDS[program["function"]].heads
        noun = plural(self.pick(NOUNS[program["category"]]))
        if "color" not in program:
            return noun
        return described(program["category"], program["color"], noun)


def _lower_first(text: str) -> str:
    return text if text.startswith(("I ", "I'm")) else text[0].lower() + text[1:]


def compose(
    frame: str, phrase: Phrase, viewpoint: str | None, rng: np.random.Generator, **words: str
) -> str:
    """Fill `frame` from `phrase` (and extra `words`), adding the viewpoint before or after."""
    text = frame.format(
        head=phrase.head, heads=phrase.heads, pred=phrase.pred, np=phrase.np, **words
    )
    if viewpoint is not None:
        prefixes, suffixes = VIEWPOINT_WORDS[viewpoint]
        if rng.random() < 0.5:
            text = f"{prefixes[rng.integers(len(prefixes))]}, {_lower_first(text)}"
        else:
            text = f"{text[:-1]}{suffixes[rng.integers(len(suffixes))]}{text[-1]}"
    return text[0].upper() + text[1:]


def answer_text(program: dict, category: str, color: str, phraser: Phraser) -> str:
    """Names the target by its color and the program's distinguishing phrase; `phraser` should
    pick canonical words."""
    target = described(category, color, NOUNS[category][0])
    kind = program["type"]
    if kind == "relation":
        return f"the {target} {phraser.where(program)}"
    if kind == "superlative":
        phrase = phraser.phrase(program)
        if program["measure"] in DISTANCE_WORDS:
            return f"the {target} {phrase.pred}"
        return f"the {target}, the {phrase.np}"
    return f"the {target}"
