"""English words with two senses that Danbooru tags apart, decided by the other words of the prompt.

Each ambiguous word has the senses it can take; a sense wins when the prompt has one of its cue
words (the cue lists are what people write next to that sense: "swinging a bat at the stadium",
"bats in a cave"). The word is then rewritten to the phrase that names that sense in the
vocabulary ("bat" -> "baseball bat"). With no cue, or cues for both, the word is left alone and
reaches the tag its alias names (the animal, for seal, bat, crane and mouse). Words already inside
the phrase of one sense ("baseball bat", "wax seal", "treasure chest") are left alone too.
"""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Sense:
    phrase: str  # what the word is rewritten to, when this sense wins ("" leaves it)
    cues: frozenset[str]


def _cues(words: str) -> frozenset[str]:
    return frozenset(words.split())


SENSES: dict[str, tuple[Sense, ...]] = {
    "seal": (
        Sense("", _cues("beach ocean sea ice iceberg aquarium zoo swim swimming pet petting feed feeding fish "
                        "arctic antarctic cute baby fur furry flipper flippers whiskers animal animals rock "
                        "seals penguin penguins polar")),
        Sense("wax seal", _cues("wax letter letters envelope envelopes stamp stamping stamped document "
                                "documents paper scroll parchment official royal press pressing pressed "
                                "ink sealed certificate talisman")),
    ),
    "bat": (
        Sense("", _cues("vampire vampires cave caves night wings wing flying fly flock halloween "
                        "bats moon full_moon spooky gothic hanging upside")),
        Sense("baseball bat", _cues("baseball softball swing swinging swings batter batting player hit "
                                    "hitting stadium wooden metal aluminum home plate pitcher cricket "
                                    "club delinquent")),
    ),
    "pitcher": (
        Sense("", _cues("lemonade water juice milk beer tea pour pouring glass glasses jug table "
                        "kitchen picnic ceramic glass")),
        Sense("baseball pitching", _cues("baseball mound throw throwing throws pitch pitching winding "
                                         "windup team uniform game field stadium catcher batter glove "
                                         "player")),
    ),
    "chest": (
        Sense("", _cues("scar hand hands hair chain necklace pendant tattoo muscular muscles bare "
                        "shirtless flat wound")),
        Sense("treasure chest", _cues("treasure wooden open opening opened lid pirate pirates gold coins "
                                      "coin chained locked lock attic dungeon loot jewels jewel")),
    ),
    "crane": (
        Sense("", _cues("river lake bird birds marsh pond wetland feather feathers flying wings snow "
                        "dawn red-crowned origami")),
        Sense("construction crane", _cues("construction site building buildings skyline city "
                                          "skyscraper skyscrapers tower steel harbor port container "
                                          "containers machine")),
    ),
    "mouse": (
        Sense("", _cues("cheese tail whiskers ears field barn cat hole cute tiny shoulder pocket")),
        Sense("computer mouse", _cues("computer keyboard desk pc laptop monitor gaming gamer screen click "
                                      "clicking office mousepad")),
    ),
}
# A word in one of these phrases already has its sense ("baseball bat", "wax seal").
SETTLED = re.compile(r"\b(baseball\s+bats?|wax\s+seals?|treasure\s+chests?|computer\s+mouse|"
                     r"construction\s+cranes?|seal\s+of\s+approval|paper\s+cranes?)\b", re.IGNORECASE)
WORD = re.compile(r"[a-z][a-z'-]*")


def disambiguate(text: str) -> str:
    """The prompt with each ambiguous word replaced by the phrase of the sense its context picks."""
    lowered = text.lower()
    present = set(WORD.findall(lowered))
    targets = [w for w in SENSES if w in present or w + "s" in present]
    if not targets:
        return text
    for word in targets:
        settled = [m.span() for m in SETTLED.finditer(text)]
        chosen = [s for s in SENSES[word] if s.cues & (present - {word, word + "s"})]
        if len(chosen) != 1 or not chosen[0].phrase:
            continue
        phrase = chosen[0].phrase

        def swap(match, phrase=phrase):
            if any(start <= match.start() < end for start, end in settled):
                return match.group(0)
            return phrase

        text = re.sub(rf"\b{word}s?\b", swap, text, flags=re.IGNORECASE)
    return text
