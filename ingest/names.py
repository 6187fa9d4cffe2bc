"""Readable default run names in MLflow's "adjective-noun-number" shape."""

from __future__ import annotations

import random

ADJECTIVES: tuple[str, ...] = tuple(
    """
    agile amber ample bold brave bright brisk calm clever cosmic crisp curious daring deft
    eager early easy fair fancy fast fleet fond gentle glad golden grand happy hardy honest
    humble jolly keen kind lively loyal lucid lucky merry mellow mighty nimble noble polite
    proud quick quiet rapid rare silent sleek smart snowy sturdy sunny swift tidy vivid
    warm wise witty
    """.split()
)

NOUNS: tuple[str, ...] = tuple(
    """
    ant bass bat bear bee bird bison boar carp cat cod colt crab crane crow deer doe dove
    duck eagle eel elk finch fox frog gnu goat goose gull hare hawk heron ibis jay koala
    lark lion lynx mink mole moose moth newt owl panda quail ram raven robin seal shark
    sloth snail swan tern toad trout wasp whale wren
    """.split()
)


def generate_run_name(rng: random.Random | None = None) -> str:
    """Make a short, readable run name such as ``"brave-owl-417"``.

    Args:
        rng: Source of randomness; pass a seeded ``random.Random`` for reproducible names.
            By default the operating system's generator is used, which needs no seeding and
            so gives forked workers distinct names without any shared state.

    Returns:
        ``"<adjective>-<noun>-<number>"`` with a number between 0 and 999, like MLflow's names.
    """
    source = rng if rng is not None else random.SystemRandom()
    return f"{source.choice(ADJECTIVES)}-{source.choice(NOUNS)}-{source.randint(0, 999)}"
