"""Grounding sources: the company's documents, read into passages that examples are generated from.

A plan's `sources:` lists files and folders (Markdown, plain text, HTML, PDF). Each file is cut along its
headings into passages of at most MAX_WORDS words; a passage keeps its heading path (the context a reader
needs) and gets a stable id (file + heading, so editing a paragraph keeps the id and changes the hash) and a
content hash. Passages are assigned to the plan's domain categories by keywords taken from the categories'
names and descriptions; the engine gives every spec one passage of its domain, least-used first.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from agent.errors import ConfigError

MAX_WORDS = 300          # a passage fits a prompt several times over, and is specific enough to check against
MIN_WORDS = 12           # a shorter section (a lone heading, a one-line note) joins the next one
SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text", ".rst": "text",
            ".html": "html", ".htm": "html", ".pdf": "pdf"}


@dataclass(frozen=True)
class Passage:
    id: str            # "<file stem>/<heading slug>[-n]": stable while the heading stays
    source: str        # the file, as the plan names it (relative paths stay relative)
    heading: str       # "Pricing > GPU instances"
    text: str
    hash: str          # of the text: a changed passage keeps its id and gets a new hash
    category: str = ""

    @property
    def words(self) -> int:
        return len(self.text.split())

    def document(self) -> str:
        """The passage as the prompt shows it."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text


@dataclass(frozen=True)
class Source:
    path: str
    hash: str          # of the file's bytes
    kind: str
    pages: int         # PDF pages; other files count as one page per 500 words (for the ingest benchmark)


def digest(data: bytes | str, n: int = 16) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:n]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "section"


# -- finding files -----------------------------------------------------------------------------------
def source_files(paths: Iterable[str]) -> list[Path]:
    """Every readable document under the plan's sources, in a stable order; ConfigError for a missing path
    or a file of a kind we cannot read."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise ConfigError(f"sources: {raw} holds no .md, .txt, .html or .pdf file; add documents or remove it")
            out += found
        elif p.is_file():
            if p.suffix.lower() not in SUFFIXES:
                raise ConfigError(f"sources: {raw} is not Markdown, text, HTML or PDF (by its suffix); convert it "
                                  f"or remove it from the plan")
            out.append(p)
        else:
            raise ConfigError(f"sources: {raw} does not exist; fix the path in the plan (relative paths are read "
                              f"from the folder datagen runs in)")
    seen: set[Path] = set()
    unique = []
    for f in out:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique


# -- reading each kind into (heading level, heading, body) sections ------------------------------------
Section = tuple[int, str, str]


def markdown_sections(text: str) -> list[Section]:
    """Sections at the headings markdown-it finds (ATX and setext; never a '#' line inside a code fence)."""
    from markdown_it import MarkdownIt

    lines = text.splitlines()
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    heads = [(t.map, int(t.tag[1]), tokens[i + 1].content.strip()) for i, t in enumerate(tokens)
             if t.type == "heading_open" and t.map]
    sections: list[Section] = []
    start, level, heading = 0, 0, ""
    for (first, after), lv, title in heads:
        sections.append((level, heading, "\n".join(lines[start:first])))
        start, level, heading = after, lv, title
    sections.append((level, heading, "\n".join(lines[start:])))
    return sections


class _HTMLSections(HTMLParser):
    """h1-h6 start sections; block elements end lines; table rows become '| a | b |' lines; script/style
    dropped. The standard library's parser: tolerant of real-world HTML and no dependency for it."""

    BLOCKS = {"p", "div", "li", "br", "section", "article", "pre", "blockquote", "ul", "ol", "table", "dd", "dt"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self.level, self.heading = 0, ""
        self.body: list[str] = []
        self.in_heading = 0
        self.skip = 0
        self.cells: list[str] | None = None
        self.buf: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "head"):
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.sections.append((self.level, self.heading, "\n".join(self.body)))
            self.level, self.heading, self.body, self.in_heading = int(tag[1]), "", [], int(tag[1])
        elif tag == "tr":
            self._flush()
            self.cells = []
        elif tag in ("td", "th") and self.cells is not None:
            self.buf = []
        elif tag in self.BLOCKS:
            self._flush()

    def handle_endtag(self, tag):
        if tag in ("script", "style", "head"):
            self.skip = max(0, self.skip - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self.in_heading:
            self.heading = " ".join("".join(self.buf).split())
            self.buf, self.in_heading = [], 0
        elif tag in ("td", "th") and self.cells is not None:
            self.cells.append(" ".join("".join(self.buf).split()))
            self.buf = []
        elif tag == "tr" and self.cells is not None:
            self.body.append("| " + " | ".join(self.cells) + " |")
            self.cells, self.buf = None, []
        elif tag in self.BLOCKS:
            self._flush()

    def handle_data(self, data):
        if not self.skip:
            self.buf.append(data)

    def _flush(self) -> None:
        if self.in_heading or self.cells is not None:
            return
        line = " ".join("".join(self.buf).split())
        if line:
            self.body.append(line)
        self.buf = []

    def result(self) -> list[Section]:
        self._flush()
        return [*self.sections, (self.level, self.heading, "\n".join(self.body))]


def html_sections(text: str) -> list[Section]:
    parser = _HTMLSections()
    parser.feed(text)
    parser.close()
    return parser.result()


def pdf_pages(path: Path) -> list[str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        return [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, OSError) as e:
        raise ConfigError(f"sources: {path} is not a readable PDF ({e}); export it again or remove it") from None


def pdf_sections(pages: list[str]) -> list[Section]:
    """PDF text has no markup: a short line without a final period, followed by text, is taken as a heading."""
    sections: list[Section] = []
    level, heading = 0, ""
    body: list[str] = []
    for page in pages:
        for line in page.splitlines():
            s = line.strip()
            if s and len(s.split()) <= 8 and not s.endswith((".", ",", ":", ";")) and not re.search(r"\d", s) \
                    and s[0].isupper() and "|" not in s:
                sections.append((level, heading, "\n".join(body)))
                level, heading, body = 1, s, []
            else:
                body.append(line)
    sections.append((level, heading, "\n".join(body)))
    return sections


def text_sections(text: str) -> list[Section]:
    return [(0, "", text)]


# -- sections -> passages ---------------------------------------------------------------------------------
def _paragraphs(body: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]


def _split(paragraphs: list[str], limit: int) -> list[str]:
    """Whole paragraphs packed into pieces of at most `limit` words; a longer paragraph is cut at sentences
    (and a sentence longer than the limit at words)."""
    units: list[str] = []
    for p in paragraphs:
        if len(p.split()) <= limit:
            units.append(p)
            continue
        for sent in re.split(r"(?<=[.!?])\s+", p):
            words = sent.split()
            units += [" ".join(words[i:i + limit]) for i in range(0, len(words), limit)]
    pieces: list[str] = []
    cur: list[str] = []
    for u in units:
        if cur and len(" ".join(cur).split()) + len(u.split()) > limit:
            pieces.append("\n\n".join(cur))
            cur = []
        cur.append(u)
    if cur:
        pieces.append("\n\n".join(cur))
    return pieces


def chunk(sections: list[Section], source: str, max_words: int = MAX_WORDS) -> list[Passage]:
    """Sections -> passages with heading paths; a section with too little text joins the next one."""
    stem = slug(Path(source).stem)
    path: list[tuple[int, str]] = []
    passages: list[Passage] = []
    used: Counter[str] = Counter()
    carry = ""
    for level, heading, body in sections:
        if heading:
            path = [(lv, h) for lv, h in path if lv < level] + [(level, heading)]
        text = "\n\n".join(x for x in (carry, body.strip()) if x)
        if len(text.split()) < MIN_WORDS:
            carry = text
            continue
        carry = ""
        title = " > ".join(h for _, h in path)
        for piece in _split(_paragraphs(text), max_words):
            base = f"{stem}/{slug(path[-1][1]) if path else 'text'}"
            used[base] += 1
            pid = base if used[base] == 1 else f"{base}-{used[base]}"
            passages.append(Passage(id=pid, source=source, heading=title, text=piece, hash=digest(piece, 12)))
    if carry and passages:  # a short tail joins the last passage
        last = passages[-1]
        text = f"{last.text}\n\n{carry}"
        passages[-1] = Passage(last.id, last.source, last.heading, text, digest(text, 12))
    elif carry:
        title = " > ".join(h for _, h in path)
        passages.append(Passage(f"{stem}/{slug(path[-1][1]) if path else 'text'}", source, title, carry, digest(carry, 12)))
    return passages


def read_file(path: Path, label: str, max_words: int = MAX_WORDS) -> tuple[Source, list[Passage]]:
    kind = SUFFIXES[path.suffix.lower()]
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"sources: cannot read {label} ({e.strerror}); check its permissions") from None
    if kind == "pdf":
        pages = pdf_pages(path)
        sections, n_pages = pdf_sections(pages), len(pages)
    else:
        text = data.decode("utf-8", errors="replace")
        sections = {"markdown": markdown_sections, "html": html_sections, "text": text_sections}[kind](text)
        n_pages = max(1, math.ceil(len(text.split()) / 500))
    return Source(label, digest(data), kind, n_pages), chunk(sections, label, max_words)


def ingest(paths: Iterable[str], max_words: int = MAX_WORDS) -> tuple[list[Source], list[Passage]]:
    sources: list[Source] = []
    passages: list[Passage] = []
    for f in source_files(paths):
        src, found = read_file(f, f.as_posix(), max_words)
        sources.append(src)
        passages += found
    ids = Counter(p.id for p in passages)
    if any(n > 1 for n in ids.values()):  # two files with one stem in different folders: qualify by position
        seen: Counter[str] = Counter()
        fixed = []
        for p in passages:
            seen[p.id] += 1
            fixed.append(p if ids[p.id] == 1 or seen[p.id] == 1 else
                         Passage(f"{p.id}~{seen[p.id]}", p.source, p.heading, p.text, p.hash))
        passages = fixed
    return sources, passages


# -- assigning passages to domain categories --------------------------------------------------------------
STOPWORDS = set(["a", "about", "above", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "because", "been", "but", "by", "can", "could", "do", "does", "for", "from", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "may", "more", "most", "not", "of", "on", "or", "our", "out", "over", "per", "so", "some", "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "to", "under", "up", "use", "used", "using", "we", "what", "when", "where", "which", "while", "who", "will", "with", "within", "without", "you", "your", "questions", "question", "subject", "area", "areas", "topic", "topics", "things"])


def stem(word: str) -> str:
    """A crude stem: the first four letters, so 'pricing' meets 'price' and 'policies' meets 'policy'."""
    return word[:4] if len(word) > 4 else word


def keywords(text: str) -> Counter[str]:
    return Counter(stem(w) for w in re.findall(r"[a-z][a-z0-9]+", text.lower()) if w not in STOPWORDS and len(w) > 1)


def category_keywords(categories: dict[str, str]) -> dict[str, dict[str, float]]:
    """Each category's keyword stems: its name's words (weight 3) and its description's words, weighted by
    how few categories share them: words every description has ('questions about cloud GPU rental') weigh
    nothing."""
    desc = {name: keywords(d) for name, d in categories.items()}
    df = Counter(k for kws in desc.values() for k in kws)
    n = len(categories)
    out = {}
    for name, kws in desc.items():
        weights = {k: c * math.log(n / df[k]) for k, c in kws.items() if n > 1 and df[k] < n}
        for k in keywords(name.replace("_", " ")):
            weights[k] = weights.get(k, 0.0) + 3.0
        out[name] = weights
    return out


def assign(passages: list[Passage], categories: dict[str, str]) -> list[Passage]:
    """Every passage gets the category whose keywords it matches best (its heading counts three times);
    a passage matching none goes to the category with the fewest passages so far."""
    weights = category_keywords(categories)
    names = list(categories)
    out: list[Passage] = []
    count: Counter[str] = Counter()
    for p in passages:
        words = keywords(p.text) + Counter({k: 3 * v for k, v in keywords(p.heading).items()})
        scores = {c: sum(w * math.log1p(words.get(k, 0)) for k, w in weights[c].items()) for c in names}
        best = max(names, key=lambda c: (scores[c], -count[c], -names.index(c))) if names else ""
        if names and scores[best] <= 0:
            best = min(names, key=lambda c: (count[c], names.index(c)))
        count[best] += 1
        out.append(Passage(p.id, p.source, p.heading, p.text, p.hash, best))
    return out


class PassagePicker:
    """One passage per spec: of the spec's domain category, the least used so far (ties: the corpus order,
    rotated by the rng so two runs differ). A category with no passage of its own draws from all of them."""

    def __init__(self, passages: list[Passage], used: dict[str, int] | None = None, rng=None):
        self.passages = {p.id: p for p in passages}
        self.by_category: dict[str, list[Passage]] = {}
        for p in passages:
            self.by_category.setdefault(p.category, []).append(p)
        self.used: Counter[str] = Counter({k: v for k, v in (used or {}).items() if k in self.passages})
        self.rng = rng

    def pick(self, category: str) -> Passage | None:
        pool = self.by_category.get(category) or list(self.passages.values())
        if not pool:
            return None
        least = min(self.used[p.id] for p in pool)
        ties = [p for p in pool if self.used[p.id] == least]
        choice = self.rng.choice(ties) if self.rng is not None else ties[0]
        self.used[choice.id] += 1
        return choice

    def release(self, passage_id: str) -> None:
        """A spec whose example was not accepted gives its passage back, so coverage follows accepted use."""
        if self.used[passage_id] > 0:
            self.used[passage_id] -= 1


def domain_categories(plan) -> dict[str, str]:
    dim = plan.dimensions.get("domain")
    return {c.name: c.description for c in dim.categories if c.share > 0} if dim else {"": ""}


def load_for_plan(plan) -> tuple[list[Source], list[Passage]]:
    """The plan's sources, read and assigned to its domain categories (ConfigError if none is readable)."""
    sources, passages = ingest(plan.sources)
    if not passages:
        raise ConfigError("sources: the documents hold no text (a scanned PDF has none to extract); add text "
                          "documents or remove sources from the plan")
    return sources, assign(passages, domain_categories(plan))


def topics_from(passages: list[Passage], per_category: int = 12) -> dict[str, list[str]]:
    """Concrete topics per domain category: the headings of its passages (the last part of the path)."""
    out: dict[str, list[str]] = {}
    for p in passages:
        title = p.heading.split(" > ")[-1] if p.heading else Path(p.source).stem.replace("_", " ")
        lst = out.setdefault(p.category, [])
        if title not in lst and len(lst) < per_category:
            lst.append(title)
    return out


def sample_grounding(plan) -> tuple[str, list[tuple[str, str]]]:
    """A typical passage (the median by length) and a call's real examples, for estimates; ("", []) for a
    plan without them or whose files cannot be read now (generate reports that, not the estimate)."""
    document, refs = "", []
    try:
        if plan.sources:
            passages = sorted(ingest(plan.sources)[1], key=lambda p: p.words)
            document = passages[len(passages) // 2].document() if passages else ""
        if plan.examples:
            from agent.references import PER_CALL, SHOWN_CHARS, load

            refs = [(u[:SHOWN_CHARS], r[:SHOWN_CHARS]) for u, r in load(plan.examples)[:PER_CALL]]
    except ConfigError:
        pass
    return document, refs
