"""Built-in real English sentences, used offline when the user gives no data.

Two disjoint sets: CALIBRATION (written for this project) feeds range calibration; the evaluation set
measures fidelity, so a range optimization is always judged on inputs it has not seen. The evaluation set
(`evaluation_texts`) is EVALUATION (32 sentences written for this project) followed by the prose sentences
of the Python language reference that ships with CPython itself: `pydoc_data/topics.py` (the text of
`help('topics')`), distributed with every CPython under the PSF License Version 2, which permits its use
and copying. It is read from the running Python, not copied into this package, so its content (about
1,400 sentences in CPython 3.11) depends on the Python version; accuracy.json records which one and a
digest of the sentence list. Sentences are split and filtered deterministically (`reference_sentences`).
"""
from __future__ import annotations

import functools
import re

CALIBRATION = [
    "The committee postponed its decision until the budget figures arrive next week.",
    "A light rain fell over the harbour while the fishing boats returned at dusk.",
    "She rewrote the opening chapter three times before sending it to her editor.",
    "The new bridge cut the commute across the river from forty minutes to ten.",
    "Our team lost the final, but nobody could fault the effort they put in.",
    "Most of the museum's paintings were moved to a dry basement during the flood.",
    "He forgot his umbrella on the train and had to walk home through the storm.",
    "The recipe calls for two cups of flour, a pinch of salt and cold butter.",
    "Researchers measured the glacier's retreat using satellite images from four decades.",
    "The film is long and slow, yet its final scene stayed with me for days.",
    "Please remember to lock the back door before you leave the office tonight.",
    "The startup hired twelve engineers in the month after its funding round closed.",
    "A stray cat has been sleeping on our porch every night since October.",
    "Prices at the farmers' market rose sharply after the late spring frost.",
    "The orchestra tuned their instruments as the audience slowly found their seats.",
    "I found the instructions confusing, so I asked a neighbour to help assemble the shelf.",
    "The library extended its opening hours during the exam period.",
    "Heavy traffic on the motorway delayed the delivery by almost three hours.",
    "The children built a snowman with a carrot nose and buttons made of coal.",
    "This laptop is light and fast, but its battery barely lasts an afternoon.",
    "The mayor promised to repair every pothole in the city before winter.",
    "After weeks of negotiation, the two companies agreed to share the patent.",
    "The soup was cold and bland, and the waiter never came back to our table.",
    "Volunteers planted more than two thousand trees along the old railway line.",
    "The telescope revealed a faint companion star orbiting the bright one.",
    "Nobody expected the quiet student to win the national chess championship.",
    "The hotel room was spotless and the staff went out of their way to help.",
    "Fresh snow closed the mountain pass, so the hikers turned back to the village.",
    "The software update fixed the crash but made the application noticeably slower.",
    "My grandmother still writes letters by hand and posts them every Monday.",
    "The bakery on the corner sells out of croissants before eight in the morning.",
    "Engineers tested the new engine at high altitude to check its fuel efficiency.",
]

EVALUATION = [
    "The concert was loud, crowded and absolutely wonderful from start to finish.",
    "A sudden power cut left the whole neighbourhood in darkness for an hour.",
    "The professor explained the proof slowly, drawing every step on the board.",
    "I would not recommend this phone; the screen cracked within a week.",
    "The river flooded the low fields, but the farmhouse on the hill stayed dry.",
    "Our flight was cancelled, so we spent the night sleeping at the airport.",
    "The gardener trimmed the hedges into neat shapes before the summer party.",
    "Sales of electric bicycles doubled in the city over the past two years.",
    "The detective noticed a muddy footprint that nobody else had seen.",
    "This novel has charming characters but a plot that goes nowhere.",
    "The council voted to turn the empty car park into a public garden.",
    "Warm bread and strong coffee made the long morning meeting bearable.",
    "The dog barked at the postman every day, yet never once tried to bite him.",
    "Scientists warned that the lake's water level is the lowest on record.",
    "The play's second act drags, though the lead actor is superb throughout.",
    "He repaired the old clock himself using parts ordered from three countries.",
    "The school bought new microscopes with money raised at the autumn fair.",
    "Thick fog delayed the ferry, and passengers waited on the pier for hours.",
    "The service was friendly, the food was fresh, and the prices were fair.",
    "Her speech about public transport drew loud applause from the audience.",
    "The hikers reached the summit just as the clouds began to clear.",
    "The printer jams on every third page, which makes it nearly useless.",
    "A small museum in the village displays tools used by local miners.",
    "The company recalled thousands of kettles after reports of faulty wiring.",
    "We watched the fireworks from the roof of our apartment building.",
    "The documentary explains climate science clearly without talking down to viewers.",
    "The train was late again, and the station had no information for anyone.",
    "My brother learned to play the guitar by watching videos every evening.",
    "The old lighthouse was turned into a small hotel with six rooms.",
    "The referee's decision in the final minute left the fans furious.",
    "This cheap umbrella survived a gale that broke two expensive ones.",
    "The volunteers served hot meals to more than three hundred people.",
]


# --- the Python language reference, split into sentences ---------------------------------------------------
DEFAULT_EVAL_SENTENCES = 100  # --eval-sentences default: 1,000's cosine interval at a tenth of it (docs/accuracy.md)
MIN_WORDS, MAX_WORDS = 6, 40   # shorter ones are headings or fragments; longer ones mostly enumerations

_HEADING_RULE = set("*=-~^")    # a heading's underline in the reStructuredText-rendered topics
_ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|etc|vs|cf)\.", re.IGNORECASE)  # no sentence ends at them
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# constructs of prose that look like code to the filter below: a quoted name ("len()", "__init__()"),
# a parenthetical remark of words, a version number
_PROSE = [(re.compile(r'"[A-Za-z_][\w.]*(?:\(\))?"'), "X"), (re.compile(r"\([A-Za-z][A-Za-z ,'\u2019\-]*\)"), ""),
          (re.compile(r"\b\d+\.\d+\b"), "N")]
# what is left of code after those: brackets, operators, markup, dotted names, quoted expressions
_CODE = re.compile(r"[()\[\]{}=<>_`*|#@\\\"~^$%&/+]|\.\.\.|\w\.\w|--")


@functools.lru_cache(maxsize=1)
def reference_sentences() -> tuple[str, ...]:
    """The prose sentences of the Python language reference shipped with this Python (pydoc_data/topics.py),
    in a fixed order: topics sorted by name, paragraphs and sentences as they come. Dropped: headings, code
    examples and grammar, sentences with code in them (brackets, operators, dotted names, which include
    "e.g." and "i.e."; a quoted name such as "len()" is allowed), fragments (< MIN_WORDS words, no capital
    or final period, a colon), run-ons (> MAX_WORDS words), repeats, and any sentence of CALIBRATION or
    EVALUATION. Empty if this Python was installed without pydoc_data (some distributions split it off)."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return ()
    seen = set(CALIBRATION) | set(EVALUATION)
    kept = []
    for name in sorted(topics):
        for sentence in prose_sentences(topics[name]):
            if sentence not in seen:
                seen.add(sentence)
                kept.append(sentence)
    return tuple(kept)


def prose_sentences(text: str) -> list[str]:
    """The prose sentences of one plain-text help topic, in order (the rules of reference_sentences)."""
    kept = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in paragraph.strip("\n").split("\n")]
        if any(line.startswith((">>>", "...")) or "::=" in line for line in lines):
            continue  # an interactive example or a grammar rule
        if len(lines) > 1 and set(lines[-1]) <= _HEADING_RULE:
            continue
        flat = re.sub(r"\s+", " ", " ".join(lines)).strip()
        flat = re.sub(r"^[*-] ", "", flat)                                  # a list item's bullet
        flat = re.sub(r"\*([A-Za-z][A-Za-z -]*)\*", r"\1", flat)            # *emphasis*
        flat = _ABBREVIATION.sub(lambda m: m.group(0).replace(".", "\0"), flat)
        kept += [s for s in (s.replace("\0", ".") for s in _SENTENCE_END.split(flat)) if _is_prose(s)]
    return kept


def _is_prose(sentence: str) -> bool:
    probe = sentence
    for pattern, replacement in _PROSE:
        probe = pattern.sub(replacement, probe)
    words = len(sentence.split())
    return (not _CODE.search(probe) and MIN_WORDS <= words <= MAX_WORDS and sentence[0].isupper()
            and sentence[-1] in ".!?" and ":" not in sentence)


def evaluation_texts(count: int | None = DEFAULT_EVAL_SENTENCES) -> tuple[list[str], str]:
    """(texts, description): the built-in evaluation set, EVALUATION then the Python reference's sentences
    (reference_sentences), `count` of them (None: all). With fewer reference sentences than asked, all of
    them; below the full set, the reference sentences are taken evenly spaced over the topics (a fixed,
    deterministic pick). The description names the source, the Python version and a digest of the texts."""
    import hashlib  # here, not at the top: the CLI's --help imports this module for its default count
    import platform
    if count is not None and count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    reference = reference_sentences()
    want = len(EVALUATION) + len(reference) if count is None else count
    texts = list(EVALUATION[:want])
    extra = min(want - len(texts), len(reference))
    if extra > 0:
        texts += [reference[i * len(reference) // extra] for i in range(extra)]
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    source = (f"{len(texts)} built-in sentences: compiler.sentences.EVALUATION ({min(want, len(EVALUATION))})"
              + (f" + the Python {platform.python_version()} language reference, pydoc_data/topics.py, PSF License "
                 f"({extra} of {len(reference)})" if extra > 0 else "")
              + f", sha256 {digest}")
    if want > len(texts):
        source += (f"; {want} were asked for, but this Python ships "
                   + (f"only {len(reference)} usable reference sentences" if reference else "no pydoc_data"))
    return texts, source
