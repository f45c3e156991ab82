"""Japanese and Chinese prompts: glossed word by word into English through data/cjk.txt, then read
by the same rules as English. Neither language separates words, so the gloss scans for the
longest known word at each position; characters it does not know are dropped."""

from .vocabulary import Vocabulary

CLAUSE_BREAK = ","
JOINER = "."
NEGATE_PREVIOUS = "!no"


def gloss(text: str, vocabulary: Vocabulary) -> str:
    pieces: list[str] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char.isascii():
            end = position
            while end < len(text) and text[end].isascii():
                end += 1
            pieces.append(text[position:end])
            position = end
            continue
        for length in range(min(vocabulary.cjk_longest, len(text) - position), 0, -1):
            meaning = vocabulary.cjk.get(text[position:position + length])
            if meaning is not None:
                break
        else:
            position += 1
            continue
        position += length
        if meaning == JOINER:
            pieces.append(" ")
        elif meaning == CLAUSE_BREAK:
            pieces.append(", ")
        elif meaning == NEGATE_PREVIOUS:
            # Japanese puts the negation after the noun: 眼鏡なし is "without glasses".
            for index in range(len(pieces) - 1, -1, -1):
                if pieces[index].strip(" ,"):
                    pieces[index] = f" no {pieces[index].strip()} "
                    break
        else:
            pieces.append(f" {meaning} ")
    return "".join(pieces)
