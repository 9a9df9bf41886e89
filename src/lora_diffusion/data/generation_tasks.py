"""Generation tasks (and two more classification tasks) as ``Example`` lists.

Every loader reads one task directory in its public layout (given by the caller; nothing
here knows where the data lives) and fails on a malformed file with a ``DataError`` that
names the file and the line (JSONL, text, TSV) or the record (JSON). Splits, row counts and
carving are in each ``TaskSpec.notes``. Budgets were measured with the packaged MiniLM (bert-base-uncased) tokenizer on each task's
training split, special tokens excluded: ``response_budget`` is the smallest multiple of 8
that holds >= 95% of training responses plus one end token (cap 160), ``max_prompt_len`` the
95th percentile of prompt tokens rounded up to a multiple of 16 (cap 384), and prompt +
response + 3 special tokens <= 512. The coverage is in each task's ``notes``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .examples import DataError, Example, TaskSpec, carve_split, register_task
from .textio import delimited_rows, read_text, read_text_lines

SEED = 0  # the carving seed of every task that ships one split only
SQUAD_EVAL_QUESTIONS = 1_000
CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K calculator annotations, e.g. <<48/2=24>>
SQUAD_TEMPLATE = "question: {question} context: {context} answer:"
QA_TEMPLATE = "question: {question} answer:"  # gsm8k, strategyqa
XSUM_TEMPLATE = "document: {document} summary:"
WMT_TEMPLATE = "translate english to german: {en} german:"
COMMONGEN_TEMPLATE = "concepts: {concepts} sentence:"
STSB_TEMPLATE = "sentence one: {a} sentence two: {b} similarity:"
WNLI_TEMPLATE = "sentence one: {a} sentence two: {b} entailed:"
YES_NO = {0: "no", 1: "yes"}


# --------------------------------------------------------------------------- readers


def _text(rec: dict, key: str, where: str) -> str:
    """``rec[key]`` as a stripped, non-empty string; ``where`` is "file:line" or "file: record i"."""
    if key not in rec:
        raise DataError(f"{where}: missing field {key!r}")
    value = rec[key]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; bad JSON names file and line."""
    rows: list[tuple[int, dict[str, Any]]] = []
    for lineno, line in enumerate(read_text_lines(path), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: bad JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        rows.append((lineno, rec))
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: bad JSON ({err.msg} at column {err.colno})") from None


def read_lines(path: Path) -> list[str]:
    """Stripped lines of a text file; an empty line names file and line."""
    lines = read_text(path).splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            raise DataError(f"{path}:{lineno}: empty line")
    if not lines:
        raise DataError(f"{path}: no data rows")
    return [line.strip() for line in lines]


def read_parallel(first: Path, second: Path) -> list[tuple[str, str]]:
    """Line pairs of two aligned text files; different line counts name both files."""
    a, b = read_lines(first), read_lines(second)
    if len(a) != len(b):
        raise DataError(f"{first} has {len(a)} lines but {second} has {len(b)}: "
                        f"parallel files must align line by line (first unpaired line {min(len(a), len(b)) + 1})")
    return list(zip(a, b))


def read_glue_tsv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: value}) of a GLUE TSV whose header names ``columns``."""
    records = list(delimited_rows(path, "\t"))
    header = records[0][1] if records else []
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}:{records[0][0] if records else 1}: header lacks {missing}; got {header}")
    where = {c: header.index(c) for c in columns}
    rows: list[tuple[int, dict[str, str]]] = []
    for lineno, rec in records[1:]:
        if len(rec) != len(header):
            raise DataError(f"{path}:{lineno}: expected {len(header)} columns, got {len(rec)}")
        values = {c: rec[i].strip() for c, i in where.items()}
        empty = [c for c, v in values.items() if not v]
        if empty:
            raise DataError(f"{path}:{lineno}: empty field(s) {empty}")
        rows.append((lineno, values))
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows


def _carved(load_all: Callable[[Path], list[Example]], eval_count: int) -> dict[str, Callable[[Path], list[Example]]]:
    """"train" / "test" loaders of a fixed seeded carve of one file's rows."""
    return {"train": lambda d: carve_split(load_all(d), eval_count, seed=SEED)[0],
            "test": lambda d: carve_split(load_all(d), eval_count, seed=SEED)[1]}


# --------------------------------------------------------------------------- SQuAD v1.1


def squad_articles(directory: Path) -> list[tuple[str, list[Example]]]:
    """(title, its questions) per article of ``dev-v1.1.json``, in file order."""
    path = directory / "dev-v1.1.json"
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list) or not data["data"]:
        raise DataError(f"{path}: expected the SQuAD layout {{'data': [articles...]}}")
    articles: list[tuple[str, list[Example]]] = []
    for a, article in enumerate(data["data"]):
        where = f"{path}: article {a}"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DataError(f"{where}: expected an object with 'title' and 'paragraphs'")
        title = _text(article, "title", where)
        examples: list[Example] = []
        for p, paragraph in enumerate(article["paragraphs"]):
            pwhere = f"{where} ({title}) paragraph {p}"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                raise DataError(f"{pwhere}: expected an object with 'context' and 'qas'")
            context = _text(paragraph, "context", pwhere)
            for q, qa in enumerate(paragraph["qas"]):
                qwhere = f"{pwhere} question {q}"
                if not isinstance(qa, dict):
                    raise DataError(f"{qwhere}: expected an object")
                qid, question = _text(qa, "id", qwhere), _text(qa, "question", qwhere)
                answers = qa.get("answers") if isinstance(qa.get("answers"), list) else []
                golds = [ans.get("text") if isinstance(ans, dict) else None for ans in answers]
                if not golds or not all(isinstance(g, str) and g.strip() for g in golds):
                    raise DataError(f"{qwhere} (id {qid}): 'answers' must be a non-empty list of {{'text': ...}}")
                refs = tuple(dict.fromkeys(g.strip() for g in golds))  # deduplicated, order kept
                examples.append(Example(prompt=SQUAD_TEMPLATE.format(question=question, context=context),
                                        response=refs[0], references=refs, id=qid))
        articles.append((title, examples))
    titles = [t for t, _ in articles]
    if len(set(titles)) != len(titles):
        raise DataError(f"{path}: article titles repeat; the article-level carve needs unique titles")
    return articles


def squad_carve(directory: Path) -> tuple[list[tuple[str, list[Example]]], list[tuple[str, list[Example]]]]:
    """(train articles, eval articles): the articles in ``carve_split``'s seeded order, eval
    taking them in that order until it holds at least ``SQUAD_EVAL_QUESTIONS`` questions."""
    articles = squad_articles(directory)
    rest, head = carve_split(articles, len(articles) - 1, seed=SEED)
    count = total = 0
    for _, examples in head + rest:  # = the whole seeded permutation
        count, total = count + 1, total + len(examples)
        if total >= SQUAD_EVAL_QUESTIONS:
            break
    if total < SQUAD_EVAL_QUESTIONS or count == len(articles):
        raise DataError(f"{directory / 'dev-v1.1.json'}: {sum(len(e) for _, e in articles)} questions; cannot give "
                        f"the eval side {SQUAD_EVAL_QUESTIONS} questions and keep an article for train")
    return carve_split(articles, count, seed=SEED)  # same permutation: its first `count` are eval


def _squad_split(side: int) -> Callable[[Path], list[Example]]:
    return lambda d: [ex for _, examples in squad_carve(d)[side] for ex in examples]


# --------------------------------------------------------------------------- GSM8K, XSum


def gsm8k_file(name: str) -> Callable[[Path], list[Example]]:
    def load(directory: Path) -> list[Example]:
        path = directory / name
        out = []
        for lineno, rec in read_jsonl(path):
            where = f"{path}:{lineno}"
            question, answer = _text(rec, "question", where), _text(rec, "answer", where)
            solution = CALCULATOR.sub("", answer)
            if "####" not in solution or "<<" in solution or ">>" in solution:
                raise DataError(f"{where}: the answer needs a final '#### N' line and balanced <<...>> annotations")
            out.append(Example(prompt=QA_TEMPLATE.format(question=question), response=solution,
                               references=(answer,), id=f"{path.stem}-{lineno}"))
        return out

    return load


def xsum_all(directory: Path) -> list[Example]:
    """Every row with a document; the public subset has one whose document is empty (line 220,
    id 32556640): it has nothing to summarise and is left out (counted in the notes)."""
    path = directory / "test_1000.jsonl"
    out = []
    for lineno, rec in read_jsonl(path):
        where = f"{path}:{lineno}"
        summary = _text(rec, "summary", where)
        if rec.get("document") == "":
            continue
        out.append(Example(prompt=XSUM_TEMPLATE.format(document=_text(rec, "document", where)), response=summary,
                           references=(summary,), id=str(rec.get("id", lineno))))
    return out


# --------------------------------------------------------------------------- WMT14 en-de, CommonGen


def wmt_pair(stem: str) -> Callable[[Path], list[Example]]:
    def load(directory: Path) -> list[Example]:
        pairs = read_parallel(directory / f"{stem}.en", directory / f"{stem}.de")
        return [Example(prompt=WMT_TEMPLATE.format(en=en), response=de, references=(de,), id=f"{stem}:{i}")
                for i, (en, de) in enumerate(pairs, start=1)]

    return load


def commongen_train(directory: Path) -> list[Example]:
    pairs = read_parallel(directory / "commongen.train.src_alpha.txt", directory / "commongen.train.tgt.txt")
    return [Example(prompt=COMMONGEN_TEMPLATE.format(concepts=", ".join(concepts.split())), response=target,
                    references=(target,), id=f"train:{i}") for i, (concepts, target) in enumerate(pairs, start=1)]


def commongen_dev(directory: Path) -> list[Example]:
    """One example per concept set of ``commongen.dev.jsonl`` (``"field_N#look_V#stand_V"``,
    part-of-speech tags dropped); every scene is a reference, the first is the response."""
    path = directory / "commongen.dev.jsonl"
    out = []
    for lineno, rec in read_jsonl(path):
        where = f"{path}:{lineno}"
        concept_set = _text(rec, "concept_set", where)
        words = [c.rsplit("_", 1)[0].strip() for c in concept_set.split("#")]
        if not all(words):
            raise DataError(f"{where}: malformed concept_set {concept_set!r}")
        scenes = rec.get("scene")
        if not isinstance(scenes, list) or not scenes or not all(isinstance(s, str) and s.strip() for s in scenes):
            raise DataError(f"{where}: 'scene' must be a non-empty list of sentences")
        refs = tuple(s.strip() for s in scenes)
        out.append(Example(prompt=COMMONGEN_TEMPLATE.format(concepts=", ".join(words)), response=refs[0],
                           references=refs, id=concept_set))
    return out


# --------------------------------------------------------------------------- StrategyQA, STS-B, WNLI


def strategyqa_all(directory: Path) -> list[Example]:
    path = directory / "strategyqa_train.json"
    data = read_json(path)
    if not isinstance(data, list) or not data:
        raise DataError(f"{path}: expected a non-empty JSON list of questions")
    out = []
    for i, rec in enumerate(data):
        where = f"{path}: record {i}"
        if not isinstance(rec, dict) or not isinstance(rec.get("answer"), bool):
            raise DataError(f"{where}: expected an object whose 'answer' is true or false")
        label = int(rec["answer"])
        out.append(Example(prompt=QA_TEMPLATE.format(question=_text(rec, "question", where)),
                           response=YES_NO[label], label=label, id=str(rec.get("qid", i))))
    return out


def glue_file(name: str, target: str) -> Callable[[Path], list[Example]]:
    """GLUE sentence pairs: ``target`` "score" (STS-B, response "d.d") or "label" (WNLI, yes/no)."""
    template = STSB_TEMPLATE if target == "score" else WNLI_TEMPLATE

    def load(directory: Path) -> list[Example]:
        path = directory / name
        out = []
        for lineno, row in read_glue_tsv(path, ("sentence1", "sentence2", target)):
            prompt, label = template.format(a=row["sentence1"], b=row["sentence2"]), None
            if target == "score":
                try:
                    score = float(row["score"])
                except ValueError:
                    raise DataError(f"{path}:{lineno}: score {row['score']!r} is not a number") from None
                if not 0.0 <= score <= 5.0:
                    raise DataError(f"{path}:{lineno}: score {score} outside [0, 5]")
                response = f"{score:.1f}"  # always d.d: the same token length for every score
            elif row["label"] in ("0", "1"):
                label = int(row["label"])  # GLUE: 1 = entailment -> "yes"
                response = YES_NO[label]
            else:
                raise DataError(f"{path}:{lineno}: unknown label {row['label']!r}")
            out.append(Example(prompt=prompt, response=response, references=(response,) if label is None else (),
                               label=label, id=f"{path.stem}:{lineno}"))
        return out

    return load


# --------------------------------------------------------------------------- registry

MEASURE = "Budgets measured with the packaged MiniLM tokenizer on the train split, special tokens excluded: "

register_task(TaskSpec(
    name="squad", kind="generation", metric="squad", data_subdir="squad_v1.1", eval_split="test",
    splits={"train": _squad_split(0), "test": _squad_split(1)},
    response_budget=16, max_prompt_len=304, template=SQUAD_TEMPLATE,
    notes=("SQuAD v1.1 dev-v1.1.json only (48 articles, 10,570 questions), carved by article so no "
           "paragraph is on both sides: the articles in carve_split's seed-0 order, eval ('test') taking them "
           "in that order until >= 1,000 questions: test 6 articles / 1,088 questions, train 42 articles / "
           "9,482 questions. Question before context, so a long prompt's truncated middle is context. "
           "Response = first gold answer; references = every gold answer, deduplicated in order. "
           + MEASURE + "response budget 16 holds 97.3% of train responses + end token; "
           "prompt p95 = 301 tokens -> 304 (95.4% of train prompts fit; longer ones lose part of the context)."),
))

register_task(TaskSpec(
    name="gsm8k", kind="generation", metric="gsm8k", data_subdir="gsm8k", eval_split="test",
    splits={"train": gsm8k_file("train.jsonl"), "test": gsm8k_file("test.jsonl")},
    response_budget=144, max_prompt_len=112, template=QA_TEMPLATE,
    notes=("GSM8K train.jsonl (7,473) / test.jsonl (1,319), public splits. Response = the solution with "
           "the <<...>> calculator annotations removed, final '#### N' line kept; reference = the original "
           "answer (the metric reads the number after ####). "
           + MEASURE + "response budget 144 holds 96.3% of train responses + end token; "
           "prompt p95 = 98 tokens -> 112 (98.0% fit)."),
))

register_task(TaskSpec(
    name="xsum", kind="generation", metric="rouge", data_subdir="xsum", eval_split="test",
    splits=_carved(xsum_all, 250),
    response_budget=40, max_prompt_len=384, template=XSUM_TEMPLATE,
    notes=("XSum test_1000.jsonl (a 1,000-row subset of the XSum test split); the one row with an empty "
           "document (line 220, id 32556640) is left out, the other 999 carved with "
           "carve_split(rows, 250, seed=0): train 749, test 250. "
           + MEASURE + "response budget 40 holds 96.9% of train responses + end token; prompt p95 = "
           "1,242 tokens -> capped at 384 (54.1% of train prompts fit; longer documents lose their middle)."),
))

register_task(TaskSpec(
    name="wmt14_en_de", kind="generation", metric="translation", data_subdir="wmt14_en_de", eval_split="test",
    splits={"train": wmt_pair("toyende_val3000.tok"), "test": wmt_pair("newstest2014.tok.filtered")},
    response_budget=112, max_prompt_len=80, template=WMT_TEMPLATE,
    notes=("WMT14 en-de, Moses-tokenized: train = toyende_val3000.tok.{en,de} (3,000 pairs), test = "
           "newstest2014.tok.filtered.{en,de} (2,737 pairs). "
           + MEASURE + "response budget 112 holds 95.1% of train responses + end token (German in "
           "English word pieces is long); prompt p95 = 68 tokens -> 80 (98.0% fit)."),
))

register_task(TaskSpec(
    name="commongen", kind="generation", metric="commongen", data_subdir="commongen", eval_split="dev",
    splits={"train": commongen_train, "dev": commongen_dev},
    response_budget=24, max_prompt_len=16, template=COMMONGEN_TEMPLATE,
    notes=("CommonGen: train = commongen.train.src_alpha.txt / .tgt.txt line pairs (39,069, concept sets "
           "repeat with different targets); dev = commongen.dev.jsonl, one example per concept set (993), "
           "POS tags dropped, every scene a reference (4,018 in all), the first the response. "
           + MEASURE + "response budget 24 holds 99.9% of train responses + end token; prompt p95 = "
           "13 tokens -> 16 (99.9% fit)."),
))

register_task(TaskSpec(
    name="strategyqa", kind="classification", metric="accuracy", data_subdir="strategyqa", eval_split="test",
    splits=_carved(strategyqa_all, 400), label_words=dict(YES_NO),
    response_budget=1, max_prompt_len=32, template=QA_TEMPLATE,
    notes=("StrategyQA strategyqa_train.json (2,290 questions; answer true -> 'yes', false -> 'no') carved "
           "with carve_split(rows, 400, seed=0): train 1,890, test 400. "
           + MEASURE + "one label-word token; prompt p95 = 22 tokens -> 32 (100% fit)."),
))

register_task(TaskSpec(
    name="stsb", kind="generation", metric="stsb", data_subdir="glue/STS-B", eval_split="dev",
    splits={"train": glue_file("train.tsv", "score"), "dev": glue_file("dev.tsv", "score")},
    response_budget=8, max_prompt_len=80, template=STSB_TEMPLATE,
    notes=("GLUE STS-B train.tsv (5,749) / dev.tsv (1,500); response = the score as 'd.d' (one decimal, "
           "always the same token length, so the length never leaks the score). "
           + MEASURE + "response budget 8 holds 100% of train responses (3 tokens) + end token; prompt p95 = "
           "65 tokens -> 80 (99.1% fit)."),
))

register_task(TaskSpec(
    name="wnli", kind="classification", metric="accuracy", data_subdir="glue/WNLI", eval_split="dev",
    splits={"train": glue_file("train.tsv", "label"), "dev": glue_file("dev.tsv", "label")}, label_words=dict(YES_NO),
    response_budget=1, max_prompt_len=80, template=WNLI_TEMPLATE,
    notes=("GLUE WNLI train.tsv (635) / dev.tsv (71); label 1 = entailment -> 'yes', 0 -> 'no'. "
           + MEASURE + "one label-word token; prompt p95 = 79 tokens -> 80 (95.7% fit)."),
))
