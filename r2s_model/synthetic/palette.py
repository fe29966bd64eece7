"""Color names used in instructions, their base RGB, and which colors each category comes in."""

import numpy as np

# No name is a word of another ("blue" vs "dark blue"), so a color phrase never reads as covering
# two of them.
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.72, 0.12, 0.10),
    "orange": (0.90, 0.47, 0.12),
    "yellow": (0.92, 0.80, 0.22),
    "green": (0.22, 0.55, 0.22),
    "teal": (0.10, 0.48, 0.50),
    "dark blue": (0.10, 0.16, 0.45),
    "purple": (0.45, 0.20, 0.55),
    "pink": (0.90, 0.56, 0.66),
    "black": (0.08, 0.08, 0.09),
    "grey": (0.48, 0.48, 0.50),
    "silver": (0.74, 0.75, 0.78),
    "white": (0.92, 0.92, 0.90),
    "beige": (0.83, 0.75, 0.58),
    "wooden brown": (0.50, 0.32, 0.17),
}

PALETTES: dict[str, tuple[str, ...]] = {
    "floor": ("grey", "wooden brown", "beige"),
    "wall": ("white", "beige"),
    "window": ("white",),
    "door": ("wooden brown", "white"),
    "chair": ("red", "dark blue", "black", "white", "green", "grey", "wooden brown", "yellow"),
    "stool": ("black", "wooden brown", "red", "white", "grey"),
    "table": ("wooden brown", "white", "black", "grey", "beige"),
    "desk": ("wooden brown", "white", "black", "grey"),
    "bed": ("white", "grey", "dark blue", "beige", "pink", "green"),
    "sofa": ("grey", "dark blue", "beige", "green", "red", "black", "teal"),
    "cabinet": ("wooden brown", "white", "grey", "black", "beige"),
    "shelf": ("wooden brown", "white", "black", "grey"),
    "lamp": ("black", "white", "silver", "yellow", "beige"),
    "monitor": ("black", "silver", "white"),
    "tv": ("black", "silver"),
    "plant": ("white", "grey", "red", "black", "orange"),  # the pot's color
    "trash_can": ("grey", "black", "white", "green", "dark blue", "silver"),
    "box": ("beige", "wooden brown", "white", "red", "dark blue", "black"),
    "cup": ("white", "red", "yellow", "dark blue", "green", "black", "pink"),
    "bottle": ("green", "teal", "white", "dark blue", "orange", "silver", "purple"),
}

# Colors of secondary parts (legs, poles, frames); they never name the object.
METAL = (0.18, 0.18, 0.19)
CHROME = (0.70, 0.71, 0.73)
WOOD = COLORS["wooden brown"]
SCREEN = (0.04, 0.05, 0.07)
GLASS = (0.62, 0.72, 0.78)
FOLIAGE = (0.16, 0.42, 0.14)


def pick_color(category: str, rng: np.random.Generator) -> tuple[str, tuple[float, float, float]]:
    """A color name from the category's palette and its RGB, jittered so instances differ."""
    name = str(rng.choice(PALETTES[category]))
    rgb = np.clip(np.array(COLORS[name]) + rng.uniform(-0.03, 0.03, 3), 0.0, 1.0)
    return name, (float(rgb[0]), float(rgb[1]), float(rgb[2]))


def shade(rgb: tuple[float, float, float], factor: float) -> tuple[float, float, float]:
    """`rgb` scaled by `factor` (darker below 1), kept in [0, 1]."""
    r, g, b = (min(1.0, max(0.0, channel * factor)) for channel in rgb)
    return r, g, b
