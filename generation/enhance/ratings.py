"""What counts as explicit, for allowNSFW: false (no explicit tags out, these terms in the negative)."""

from .text import words

# A tag is explicit when one of its words is one of these ("cum_in_pussy", "group_sex", "nude").
# Questionable clothing words are here too: a safe picture should not be steered towards them.
EXPLICIT_WORDS = frozenset(
    """sex penis penises pussy vagina vulva clitoris nipples nipple areolae areola nude naked cum
    semen ejaculation orgasm erection testicles anus anal fellatio cunnilingus paizuri handjob
    footjob masturbation rape bestiality lactation pubic genitals cameltoe cleft bukkake futanari
    hentai porn pornography nsfw explicit topless bottomless panties pantyshot underwear lingerie
    bra thong buttjob groping molestation bondage shibari bdsm uncensored censored creampie
    ahegao breasts_out exhibitionism voyeurism netorare""".split()
)

NSFW_NEGATIVE = ("nsfw", "explicit", "nude", "naked", "nipples", "pussy", "penis", "sex", "cum",
                 "topless", "bottomless", "underwear", "panties", "lingerie")


def is_explicit(tag: str) -> bool:
    return any(word in EXPLICIT_WORDS for word in words(tag.replace("_", " "))) or tag in EXPLICIT_WORDS
