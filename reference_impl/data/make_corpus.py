"""Writes data/corpus.txt: short plain-English stories from a small grammar (deterministic, offline).

Why generated: the reference trainer must train out of the box without downloads, and text with
real sentence structure makes the loss curve fall visibly within a few dozen CPU steps.
Run: python data/make_corpus.py  (from reference_impl/).
"""

import random
from pathlib import Path

NAMES = [
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Ella",
    "Finn",
    "Grace",
    "Henry",
    "Iris",
    "Jack",
    "Lucy",
    "Max",
    "Nora",
    "Oscar",
    "Pia",
    "Sam",
    "Tom",
    "Mia",
    "Leo",
    "Rosa",
]
ANIMALS = ["cat", "dog", "fox", "owl", "rabbit", "horse", "duck", "mouse", "bear", "goat", "frog", "crow"]
PLACES = [
    "the forest",
    "the river",
    "the old mill",
    "the market",
    "the hill",
    "the garden",
    "the harbour",
    "the library",
    "the farm",
    "the village square",
    "the bridge",
    "the meadow",
]
OBJECTS = [
    "a red ball",
    "a small boat",
    "a wooden box",
    "a silver key",
    "a kite",
    "a map",
    "a lantern",
    "a basket of apples",
    "a blue hat",
    "a book of songs",
    "a broken clock",
    "a loaf of bread",
]
FEELINGS = ["happy", "sad", "tired", "curious", "afraid", "proud", "angry", "calm", "surprised", "hungry"]
WEATHER = [
    "The sun was warm",
    "Rain fell all morning",
    "A cold wind blew",
    "The sky was grey",
    "Snow covered the roofs",
    "The air smelled of flowers",
    "Fog hid the valley",
]
TIMES = [
    "One morning",
    "Late in the evening",
    "On a quiet Sunday",
    "Before dawn",
    "After lunch",
    "Long ago",
    "In the middle of winter",
    "On the first day of spring",
]
VERBS = ["found", "lost", "carried", "painted", "fixed", "hid", "shared", "sold", "wanted", "dropped"]
SAYINGS = [
    "Let us go together",
    "I can help you",
    "Where did it go",
    "This is the best day",
    "We should ask for help",
    "Do not be afraid",
    "I have an idea",
    "Look over there",
]
LESSONS = [
    "friends make hard things easy",
    "it is good to ask for help",
    "patience pays off",
    "small things can matter a lot",
    "kindness comes back",
    "it is fine to be afraid sometimes",
]


def sentence(rng: random.Random, hero: str, friend: str, animal: str) -> str:
    place, obj, feel = rng.choice(PLACES), rng.choice(OBJECTS), rng.choice(FEELINGS)
    forms = [
        f"{hero} walked to {place} with the {animal}.",
        f"There {hero} {rng.choice(VERBS)} {obj}.",
        f"{friend} was {feel} and looked at {hero}.",
        f'"{rng.choice(SAYINGS)}," said {rng.choice([hero, friend])}.',
        f"The {animal} ran around {place} and came back with {obj}.",
        f"{rng.choice(WEATHER)}, so {hero} and {friend} stayed near {place}.",
        f"{hero} felt {feel} because {friend} had {rng.choice(VERBS)} {obj}.",
        f"They sat by {place} and talked about {obj} for a long time.",
        f"Then the {animal} jumped, and everyone laughed.",
        f'{friend} asked, "Why is the {animal} so {feel}?"',
    ]
    return rng.choice(forms)


def story(rng: random.Random) -> str:
    hero, friend = rng.sample(NAMES, 2)
    animal = rng.choice(ANIMALS)
    lines = [f"{rng.choice(TIMES)}, {hero} and {friend} met a {animal} near {rng.choice(PLACES)}."]
    lines += [sentence(rng, hero, friend, animal) for _ in range(rng.randint(4, 9))]
    lines.append(f"In the end {hero} learned that {rng.choice(LESSONS)}.")
    return " ".join(lines)


def main(size_bytes: int = 300_000, seed: int = 0) -> None:
    rng = random.Random(seed)
    stories, total = [], 0
    while total < size_bytes:
        stories.append(story(rng))
        total += len(stories[-1]) + 2
    out = Path(__file__).with_name("corpus.txt")
    out.write_text("\n\n".join(stories) + "\n")
    print(f"wrote {out.name}: {len(stories)} stories, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
