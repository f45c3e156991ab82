"""Hand-written English word classes the enhancer reasons with (who is in the picture, how many,
what is negated, which words only describe). Words are written out; the *_STEMS forms hold their
stems (see text.stem). The longer phrase tables live in data/phrases.txt.
"""

from .text import stem


def stems(words: str) -> frozenset[str]:
    return frozenset(stem(w) for w in words.split())


# Removed before phrase matching ("pointing at the viewer" -> looking for "pointing at viewer").
ARTICLES = frozenset("a an the some this that these those his her their its my your our".split())

# Words that never stand for a tag on their own, though Danbooru has a tag or alias spelt so.
# Function words, and aliases that are everyday English with another meaning ("man" is aliased
# to male_focus, "tie" to necktie, "side" to from_side, "hold" to holding, "manga" to comic).
NOT_A_TAG_ALONE = frozenset(
    """a an the and or nor but with without of in on at to from by for as into onto over under
    above below behind near between through across around among along beside inside outside upon
    within toward towards via per plus minus is are was were be been being am has have had do does
    did will would can could should may might must shall this that these those it its he she they
    them his her hers their him my your our we you me us who whom which what where when why how
    there here then than so very too also just only not no yes all any each every both either
    neither one two three four five six seven eight nine ten many much more most few lot lots
    while during before after up down out off again still even ever never always sometimes often
    like such own same other another about against if because though although since until unless
    whether let make get go come take give see look put set show use keep stay new old big small
    good bad great nice pretty cute beautiful lovely cool awesome amazing best better high low real
    true false well way thing stuff something someone somebody anyone anything nothing nobody
    everybody everything everyone person people image picture photo illustration art artwork style
    scene view render anime manga cartoon kind type sort bit piece part area place time background
    man men woman women girl girls boy boys guy male female lady side tie hold holds bust turning
    sheets highlights rough younger older sole balls shades animation flush trap strip group wave
    character focus back light dark open close full half whole top bottom front left right first
    last next center middle detailed quality masterpiece colored coloured shot wearing dressed
    cock dick pussy bush beaver date red orange yellow green blue purple pink white black grey gray brown
    silver golden gold blond blonde violet""".split()
)
NOT_A_TAG_ALONE_STEMS = frozenset(stem(w) for w in NOT_A_TAG_ALONE)


# Who is in the picture. PRIMARY nouns name a person outright; ROLE nouns describe one ("a witch",
# "an office worker man") and only count when no primary noun is present, since "a vampire girl"
# and "a girl ..., an angel with a halo" are one person. Gender: f, m, or "" (not stated).
PRIMARY_SUBJECTS = {
    "girl": "f", "woman": "f", "lady": "f", "female": "f", "gal": "f", "lass": "f",
    "schoolgirl": "f", "catgirl": "f", "foxgirl": "f", "boy": "m", "man": "m", "guy": "m",
    "male": "m", "gentleman": "m", "schoolboy": "m", "lad": "m", "dude": "m", "person": "",
    "human": "", "child": "", "kid": "", "teenager": "", "adult": "",
}
ROLE_SUBJECTS = {
    # Roles that anime art draws as women unless told otherwise (a "nurse" is 1girl on Danbooru).
    "maid": "f", "nurse": "f", "witch": "f", "princess": "f", "queen": "f", "idol": "f", "bride": "f",
    "goddess": "f", "mother": "f", "mom": "f", "sister": "f", "daughter": "f", "wife": "f",
    "girlfriend": "f", "waitress": "f", "nun": "f", "miko": "f", "kunoichi": "f", "mermaid": "f",
    "heroine": "f", "actress": "f", "ballerina": "f", "cheerleader": "f", "housewife": "f",
    "grandmother": "f", "granny": "f", "priestess": "f", "sorceress": "f", "empress": "f",
    "succubus": "f", "fairy": "f", "cowgirl": "f", "policewoman": "f", "swordswoman": "f",
    "gyaru": "f", "valkyrie": "f", "geisha": "f", "oiran": "f", "maiden": "f",
    "prince": "m", "king": "m", "father": "m", "dad": "m", "brother": "m", "son": "m",
    "husband": "m", "boyfriend": "m", "butler": "m", "monk": "m", "salaryman": "m",
    "businessman": "m", "grandfather": "m", "grandpa": "m", "emperor": "m", "priest": "m",
    "wizard": "m", "samurai": "m", "cowboy": "m", "policeman": "m", "swordsman": "m",
    "gentlemen": "m", "incubus": "m", "shota": "m", "lord": "m",
    "knight": "", "ninja": "", "soldier": "", "warrior": "", "student": "", "adventurer": "",
    "astronaut": "", "pilot": "", "chef": "", "cook": "", "doctor": "", "teacher": "",
    "detective": "", "officer": "", "vampire": "", "elf": "", "angel": "", "demon": "",
    "android": "", "cyborg": "", "magician": "", "mage": "", "archer": "", "hunter": "",
    "singer": "", "dancer": "", "worker": "", "athlete": "", "player": "", "gamer": "",
    "traveler": "", "traveller": "", "pirate": "", "thief": "", "assassin": "", "sniper": "",
    "scientist": "", "farmer": "", "florist": "", "baker": "", "barista": "", "musician": "",
    "guitarist": "", "pianist": "", "painter": "", "artist": "", "writer": "", "programmer": "",
    "hacker": "", "mechanic": "", "firefighter": "", "explorer": "", "sailor": "", "captain": "",
    "delinquent": "", "gangster": "", "mafia": "", "yakuza": "", "zombie": "", "ghost": "",
    "kitsune": "", "oni": "", "demigod": "", "paladin": "", "cleric": "", "druid": "",
    "ranger": "", "rogue": "", "bard": "", "necromancer": "", "shaman": "", "summoner": "",
    "swordfighter": "", "gunslinger": "", "mercenary": "", "spy": "", "agent": "", "butcher": "",
    "surfer": "", "skater": "", "cyclist": "", "runner": "", "swimmer": "", "twin": "",
}
PRIMARY_SUBJECT_STEMS = {stem(w): g for w, g in PRIMARY_SUBJECTS.items()}
ROLE_SUBJECT_STEMS = {stem(w): g for w, g in ROLE_SUBJECTS.items()}
# Collective nouns: how many of each gender they mean when nobody else is named.
COLLECTIVE_SUBJECTS = {stem("couple"): {"f": 1, "m": 1}}

PRONOUN_GENDER = {"she": "f", "her": "f", "herself": "f", "hers": "f", "he": "m", "him": "m",
                  "his": "m", "himself": "m"}

QUANTITIES = {
    "a": 1, "an": 1, "one": 1, "single": 1, "lone": 1, "solo": 1, "1": 1,
    "two": 2, "pair": 2, "both": 2, "twin": 2, "twins": 2, "2": 2, "three": 3, "trio": 3, "3": 3,
    "four": 4, "4": 4, "five": 5, "5": 5, "six": 6, "6": 6, "seven": 7, "7": 7, "eight": 8, "8": 8,
    "nine": 9, "9": 9, "ten": 10, "10": 10, "eleven": 11, "twelve": 12,
}
MANY = -1  # "several girls", "a group of boys": more than one, number unknown.
MANY_WORDS = frozenset("several many multiple group crowd lots bunch few various numerous dozens".split())
IRREGULAR_PLURALS = frozenset("men women people children gentlemen".split())
# "the girl" after "a girl" is the same girl.
DEFINITE = frozenset("the this that".split())
# Participles spelled like an inflected noun but another word ("a winding road" is no wind, a
# bowing girl wears no bow): matched as written, never by the stem they seem to share.
NOT_INFLECTIONS = frozenset("winding bowing tearing rowing leaves".split())

NEGATORS = frozenset("no without not never nor non".split())
# A negation covers the noun phrase after it: "without glasses, short hair" negates only glasses.
NEGATION_STOPS = frozenset(
    """but with while in on at under over near by from behind beside into onto and who which that
    is are wearing holding standing sitting looking""".split()
)
NEGATION_LEADING_VERBS = stems("wear wearing wears have having has hold holding carrying carry use using")

# Colour words, normalised to Danbooru's spelling of the colour.
COLOURS = {
    "red": "red", "orange": "orange", "yellow": "yellow", "green": "green", "blue": "blue",
    "purple": "purple", "pink": "pink", "white": "white", "black": "black", "grey": "grey",
    "gray": "grey", "brown": "brown", "silver": "grey", "golden": "gold", "gold": "gold",
    "blond": "blonde", "blonde": "blonde", "violet": "purple", "lavender": "purple",
    "crimson": "red", "scarlet": "red", "azure": "blue", "navy": "blue", "cyan": "aqua",
    "teal": "aqua", "aqua": "aqua", "turquoise": "aqua", "beige": "beige", "magenta": "pink",
}
# Hairstyles: a colour before one is the hair's colour ("pink twintails" -> pink_hair).
HAIRSTYLES = frozenset(
    """twintails ponytail side_ponytail high_ponytail braid twin_braids single_braid side_braid hair_bun
    double_bun single_hair_bun bob_cut hime_cut drill_hair ahoge short_twintails low_twintails
    messy_hair spiked_hair wavy_hair curly_hair straight_hair bangs""".split()
)

# Garments whose colour Danbooru tags on the general kind ("white sundress" -> white_dress).
GARMENT_KINDS = {
    "sundress": "dress", "wedding_dress": "dress", "evening_gown": "dress", "frilled_dress": "dress",
    "short_dress": "dress", "long_dress": "dress", "china_dress": "dress", "miniskirt": "skirt",
    "pleated_skirt": "skirt", "long_skirt": "skirt", "trench_coat": "coat", "winter_coat": "coat",
    "fur_coat": "coat", "t-shirt": "shirt", "collared_shirt": "shirt", "dress_shirt": "shirt",
    "leather_jacket": "jacket", "hooded_jacket": "jacket", "track_jacket": "jacket", "blazer": "jacket",
    "cardigan": "cardigan", "sneakers": "footwear", "boots": "footwear", "high_heels": "footwear",
    "beret": "headwear", "baseball_cap": "headwear", "beanie": "headwear",
}

# Nouns that a colour describes but that are not worth a tag alone ("blue hair" -> blue_hair,
# never a bare "hair").
NOT_STANDALONE_HEADS = frozenset("hair eyes skin theme background".split())

# verb stem -> the Danbooru prefix its object tags take ("holding a sword" -> holding_sword).
VERB_PREFIXES = {
    "hold": "holding", "carry": "holding", "wield": "holding", "grip": "holding", "grasp": "holding",
    "clutch": "holding", "play": "playing", "rid": "riding", "eat": "eating", "drink": "drinking",
    "read": "reading", "hug": "hugging", "lick": "licking", "throw": "throwing", "kick": "kicking",
    "pet": "petting", "feed": "feeding", "kiss": "kissing", "shar": "shared", "bit": "biting",
}

# "on_rooftop" -> rooftop, "above_clouds" -> cloud: the place named by a positional tag.
PLACE_PREFIXES = frozenset("on in above under inside outside".split())
NOT_A_PLACE = frozenset(
    """back side stomach head lap shoulder shoulders one_knee all_fours ground floor hand hands arm arms
    leg legs foot feet finger fingers chin cheek face hip hips mouth knee knees neck chest breast breasts
    ass thigh thighs own""".split()
)

# Objects and the kind they are, for "<verb>_<kind>" tags (katana -> holding_sword).
OBJECT_KINDS = {
    "katana": "sword", "rapier": "sword", "sabre": "sword", "saber_(weapon)": "sword",
    "scimitar": "sword", "broadsword": "sword", "greatsword": "sword", "longsword": "sword",
    "excalibur_(fate/stay_night)": "sword", "master_sword": "sword", "huge_sword": "sword",
    "smartphone": "phone", "cellphone": "phone", "handgun": "gun", "rifle": "gun",
    "shotgun": "gun", "assault_rifle": "gun", "submachine_gun": "gun", "sniper_rifle": "gun",
    "guitar": "instrument", "electric_guitar": "instrument", "acoustic_guitar": "instrument",
    "bass_guitar": "instrument", "violin": "instrument", "piano": "instrument", "flute": "instrument",
    "trumpet": "instrument", "cello": "instrument", "drum": "instrument", "drum_set": "instrument",
    "harp": "instrument", "ukulele": "instrument", "saxophone": "instrument",
    "keyboard_(instrument)": "instrument", "accordion": "instrument", "shamisen": "instrument",
    "soccer": "sports", "volleyball": "sports", "basketball": "sports", "baseball": "sports",
    "tennis": "sports", "badminton": "sports", "american_football": "sports",
    "hand_fan": "fan", "folding_fan": "fan", "paper_fan": "fan", "uchiwa": "fan",
    "teacup": "cup", "mug": "cup", "coffee_mug": "cup", "oil-paper_umbrella": "umbrella",
    "parasol": "umbrella", "paper_lantern": "lantern", "bouquet": "flower", "rose": "flower",
    "sunflower": "flower", "spear": "polearm", "naginata": "polearm", "staff": "staff",
    "kitten": "cat", "puppy": "dog", "magic_wand": "wand", "bow_(weapon)": "bow_(weapon)", "book": "book",
}

# Function words that end no tag name in a sentence: an alias "sitting_on" would swallow the
# "on" of "sitting on a bench".
DANGLING_WORDS = frozenset("on in at of with to from by for and or the a an into onto".split())

# Describing words whose compound tag also implies the plain one (long_pointy_ears -> pointy_ears,
# side_ponytail -> ponytail); nouns as first words do not (teddy_bear is no bear).
ADJECTIVE_MODIFIERS = frozenset(
    """long short pointy messy spiky side high low wide small large big huge tiny torn wet open frilled
    striped plaid checkered polka sleeveless cropped oversized loose tight fluffy shiny glowing
    floppy curly wavy straight""".split()
)

# Tags that say a person is drawn even when the prompt names nobody ("long hair, smiling").
PERSON_CUE_SUFFIXES = ("_hair", "_eyes", "_ponytail", "_braid", "_twintails")
PERSON_CUE_TAGS = frozenset(
    """smile blush grin smirk crying tears one_eye_closed looking_at_viewer ponytail twintails
    braid ahoge hair_bun bangs closed_eyes open_mouth cowboy_shot upper_body long_hair short_hair
    medium_hair very_long_hair""".split()
)
FEMALE_CUE_TAGS = frozenset(
    """dress skirt bikini swimsuit sundress miniskirt pleated_skirt thighhighs pantyhose
    high_heels bra maid_headdress frilled_dress serafuku lipstick twintails""".split()
)
MALE_CUE_TAGS = frozenset("beard mustache facial_hair stubble male_focus".split())

# Places that make a picture without people "scenery" on Danbooru.
LANDSCAPE_TAGS = frozenset(
    """forest mountain ocean beach lake river field city cityscape town village landscape sky ruins
    street building castle waterfall desert meadow garden hill cliff island space scenery
    flower_field night_sky starry_sky sunset sunrise cloud snow mountainous_horizon horizon
    grass nature shore coast canyon valley volcano cave swamp road bridge""".split()
)

# Poses and actions only a person (or an animal) takes: with nobody named they still mean someone.
POSE_TAGS = frozenset(
    """standing sitting lying kneeling squatting crouching walking running jumping sleeping
    on_back on_stomach on_side leaning_forward leaning_back stretching arms_up hands_up reaching
    waving dancing singing fighting seiza indian_style sitting_on_bench on_bench crossed_legs
    crossed_arms hugging_own_legs""".split()
)
# Animals and creatures that can be the one who stands, sits or sleeps.
ANIMAL_TAGS = frozenset(
    """cat dog fox wolf bird dragon horse rabbit bear deer fish owl crow penguin hamster squirrel
    tiger lion panda duck chicken cow pig sheep goat frog snake turtle butterfly kitten puppy
    creature monster animal slime_(creature) eastern_dragon western_dragon unicorn pegasus
    griffin whale dolphin shark bat_(animal) seal_(animal) crane_(animal) mouse_(animal)""".split()
)
