"""Saving a student as an ordinary Hugging Face checkpoint: weights, tokenizer with the wrapper as its chat template
(decoder-only), generation config and herd.json; and what its model card says per family. Writes the checkpoint
folder it is given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from herd.students.families import Family, family_spec
from herd.students.loading import META_FILE, forget_quantizer
from herd.students.prompting import PLACEHOLDER, check_wrapper

MODEL_PLACEHOLDER = "MODEL"  # the snippets name the checkpoint by its folder; tests substitute the real path
# the LaMini README's example instruction
INSTRUCTION = ("Please let me know your thoughts on the given place and why you think it deserves to be visited: "
               '\n"Barcelona, Spain"')


def chat_template_for(wrapper: str, response_prefix: str) -> str:
    """A Jinja chat template that renders a user turn as the wrapper and an assistant turn as prefix+text+EOS.

    Literal text goes in as JSON string literals inside {{ }} (Jinja unescapes them), so no character of the wrapper
    can be taken for template syntax, and trim_blocks cannot eat its newlines.
    """
    before, after = check_wrapper(wrapper).split(PLACEHOLDER)
    lit = json.dumps
    return (
        "{% for message in messages %}{% if message['role'] == 'user' %}"
        f"{{{{ {lit(before)} }}}}{{{{ message['content'] }}}}{{{{ {lit(after)} }}}}"
        "{% elif message['role'] == 'assistant' %}"
        f"{{{{ {lit(response_prefix)} }}}}{{{{ message['content'] }}}}{{{{ eos_token }}}}"
        "{% endif %}{% endfor %}"
    )


def save_student(model: Any | None, tokenizer: Any, family: Family, folder: Path, meta: dict[str, Any]) -> Path:
    """Write a normal HF checkpoint plus herd.json; the wrapper (causal) becomes the tokenizer's chat template.

    `model=None` when the weights are already in `folder` (FSDP / ZeRO-3 save them from every rank)."""
    folder.mkdir(parents=True, exist_ok=True)
    if model is not None:
        forget_quantizer(model)
        model.config.use_cache = True  # training turned it off; generation wants it
        model.save_pretrained(str(folder))
    wrapper = meta.get("wrapper") if family_spec(family).wraps_prompts else None
    if wrapper:
        tokenizer.chat_template = chat_template_for(wrapper, meta.get("response_prefix", " "))
    tokenizer.save_pretrained(str(folder))
    portable_tokenizer_config(folder)
    full = {"family": family, "wrapper": wrapper, **{k: v for k, v in meta.items() if k != "wrapper"}}
    (folder / META_FILE).write_text(json.dumps(full, indent=2, ensure_ascii=False, default=str) + "\n")
    return folder


def portable_tokenizer_config(folder: Path) -> None:
    """transformers 5 names its generic fast tokenizer 'TokenizersBackend', a class transformers 4 lacks; both know
    it as 'PreTrainedTokenizerFast', so the checkpoint says that and loads under either (the LaMini snippets)."""
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def card_facts(name: str, family: Family, wrapper: str | None) -> dict[str, str]:
    """What a model card says that depends on the family: Hub pipeline tag, kind, prompt format, usage snippets."""
    spec = family_spec(family)
    kind = ("An " if spec.label[0] in "aeiou" else "A ") + spec.label
    prompt = "It takes the bare instruction as input."
    if spec.wraps_prompts:
        prompt = ("It was trained with this instruction wrapper (also its tokenizer's chat template; `herd.json` keeps "
                  f"it too):\n\n```text\n{wrapper}\n```")
    return {"kind": kind, "pipeline_tag": spec.pipeline_tag, "prompt": prompt, "usage": usage(name, family, wrapper)}


def usage(name: str, family: Family, wrapper: str | None) -> str:
    """Markdown with the usage snippets (each a runnable ```python block)."""
    herd_block = (
        "```python\nimport herd\n\n"
        f'pipe = herd.pipeline("{MODEL_PLACEHOLDER}")  # this folder, or its Hub id once uploaded\n'
        f"instruction = {json.dumps(INSTRUCTION)}\n"
        "answer = pipe(instruction, max_new_tokens=256, do_sample=True, repetition_penalty=1.5)[0]"
        '["generated_text"]\nprint(answer)\n```\n'
    )
    if not family_spec(family).wraps_prompts:
        hf = (
            "With transformers 4.x, the LaMini README's snippet (transformers 5 removed `text2text-generation`):\n\n"
            "```python\nfrom transformers import pipeline\n\n"
            f'checkpoint = "{MODEL_PLACEHOLDER}"\nmodel = pipeline("text2text-generation", model=checkpoint)\n'
            f"input_prompt = {json.dumps(INSTRUCTION)}\n"
            "generated_text = model(input_prompt, max_length=512, do_sample=True)[0][\"generated_text\"]\n"
            "print(\"Response\", generated_text)\n```\n\n"
            "With transformers 5 and no herd:\n\n"
            "```python\nfrom transformers import AutoModelForSeq2SeqLM, AutoTokenizer\n\n"
            f'checkpoint = "{MODEL_PLACEHOLDER}"\ntokenizer = AutoTokenizer.from_pretrained(checkpoint)\n'
            "model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint)\n"
            f"inputs = tokenizer({json.dumps(INSTRUCTION)}, return_tensors=\"pt\")\n"
            "output = model.generate(**inputs, max_length=512, do_sample=True)\n"
            "print(tokenizer.decode(output[0], skip_special_tokens=True))\n```\n"
        )
    else:
        hf = (
            "With transformers (4.x or 5.x), the LaMini README's snippet: the instruction goes inside the wrapper "
            "it was trained with, which is also this tokenizer's chat template.\n\n"
            "```python\nfrom transformers import pipeline\n\n"
            f'checkpoint = "{MODEL_PLACEHOLDER}"\ngenerator = pipeline("text-generation", model=checkpoint)\n'
            f"instruction = {json.dumps(INSTRUCTION)}\n"
            f'input_prompt = {json.dumps(wrapper or "{instruction}")}.replace("{{instruction}}", instruction)\n'
            "generated_text = generator(input_prompt, max_length=512, do_sample=True, repetition_penalty=1.5)[0]"
            '["generated_text"]\nprint("Response", generated_text)\n```\n'
        )
    return (f"With herd (transformers 5; one call for both model families):\n\n{herd_block}\n{hf}\n"
            f"From the command line: `herd chat --model path/to/{name}`, or `herd generate --model path/to/{name} "
            "--input instructions.jsonl`.\n")
