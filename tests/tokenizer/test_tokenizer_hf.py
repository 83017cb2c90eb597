"""The saved directory: transformers reads it and agrees with our loader, id for id."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dscoder.errors import UserError
from dscoder.tokenizer import DEEPSEEK_CODER_CHAT_TEMPLATE, Tokenizer, special


def test_directory_has_the_hugging_face_files(tokenizer_dir: Path):
    assert sorted(p.name for p in tokenizer_dir.iterdir()) == [
        "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json",
    ]
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["add_bos_token"] is True
    assert (config["bos_token"], config["eos_token"]) == (special.BOS, special.EOS)
    assert config["chat_template"] == DEEPSEEK_CODER_CHAT_TEMPLATE


def test_transformers_gives_the_same_ids(
    tokenizer: Tokenizer, hf_tokenizer, varied_texts, stdlib_texts
):
    texts = [*varied_texts, stdlib_texts[0][:5000]]
    for text in texts:
        assert hf_tokenizer.encode(text, add_special_tokens=False) == tokenizer.encode(text)
    batch = hf_tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert batch == tokenizer.encode_batch(texts)


def test_bos_follows_add_bos_token(tokenizer: Tokenizer, hf_tokenizer, varied_texts):
    for text in varied_texts:
        with_bos = tokenizer.encode(text, add_bos=True)
        assert hf_tokenizer(text)["input_ids"] == with_bos
        assert with_bos.count(tokenizer.bos_id) == 1 and with_bos[0] == tokenizer.bos_id
    assert tokenizer.encode_batch(list(varied_texts), add_bos=True) == [
        tokenizer.encode(text, add_bos=True) for text in varied_texts
    ]


def test_saved_files_follow_add_bos_token(tokenizer_dir: Path, tmp_path: Path):
    # transformers' generic fast tokenizer adds BOS from tokenizer.json's post-processor and
    # ignores the config's flag, so saving must write both the same way.
    transformers = pytest.importorskip("transformers")
    edited = tmp_path / "edited"
    shutil.copytree(tokenizer_dir, edited)
    config_file = edited / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["add_bos_token"] = False
    config_file.write_text(json.dumps(config), encoding="utf-8")
    ours = Tokenizer.from_dir(edited)
    assert ours.add_bos_token is False
    ours.save(tmp_path / "saved")
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "saved"))
    assert theirs("x = 1")["input_ids"] == ours.encode("x = 1")


def test_decode_inverts_encode(tokenizer: Tokenizer, hf_tokenizer, varied_texts):
    for text in varied_texts:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        assert hf_tokenizer.decode(ids) == text


def test_skip_special_tokens_agrees_with_transformers(tokenizer: Tokenizer, hf_tokenizer):
    ids = [tokenizer.bos_id, tokenizer.fim_begin_id, *tokenizer.encode("a = 1"), tokenizer.eot_id]
    ours = tokenizer.decode(ids, skip_special_tokens=True)
    assert ours == hf_tokenizer.decode(ids, skip_special_tokens=True) == "a = 1"


def test_save_and_load_keep_everything(tokenizer: Tokenizer, tmp_path: Path, varied_texts):
    tokenizer.save(tmp_path / "copy")
    loaded = Tokenizer.from_dir(tmp_path / "copy")
    assert loaded.encode_batch(list(varied_texts)) == tokenizer.encode_batch(list(varied_texts))
    assert (loaded.vocab_size, loaded.bos_id, loaded.eos_id, loaded.pad_id, loaded.eot_id) == (
        tokenizer.vocab_size,
        tokenizer.bos_id,
        tokenizer.eos_id,
        tokenizer.pad_id,
        tokenizer.eot_id,
    )
    assert loaded.chat_template == tokenizer.chat_template


def test_reads_what_transformers_saves(
    hf_tokenizer, tokenizer: Tokenizer, tmp_path: Path, varied_texts
):
    # transformers 5 writes the chat template to chat_template.jinja instead of the config.
    hf_tokenizer.save_pretrained(str(tmp_path))
    loaded = Tokenizer.from_dir(tmp_path)
    assert loaded.chat_template == DEEPSEEK_CODER_CHAT_TEMPLATE
    assert loaded.encode_batch(list(varied_texts)) == tokenizer.encode_batch(list(varied_texts))
    assert (loaded.bos_id, loaded.eos_id) == (tokenizer.bos_id, tokenizer.eos_id)


def test_instruct_copy_stops_at_eot(tokenizer: Tokenizer, tmp_path: Path):
    transformers = pytest.importorskip("transformers")
    tokenizer.with_eos(special.EOT).save(tmp_path)
    assert Tokenizer.from_dir(tmp_path).eos_id == tokenizer.eot_id
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert theirs.eos_token_id == tokenizer.eot_id


def test_reads_released_style_config(tokenizer_dir: Path, tmp_path: Path):
    # The released configs spell tokens as AddedToken objects and name the Llama class.
    shutil.copy(tokenizer_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    added = {
        "__type": "AddedToken",
        "lstrip": False,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    }
    config = {
        "add_bos_token": True,
        "bos_token": {**added, "content": special.BOS},
        "eos_token": {**added, "content": special.EOT},
        "pad_token": {**added, "content": special.EOS},
        "tokenizer_class": "LlamaTokenizerFast",
        "model_max_length": 16384,
    }
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    loaded = Tokenizer.from_dir(tmp_path)
    assert loaded.eos_id == loaded.eot_id and loaded.pad_id == loaded.token_id(special.EOS)
    assert loaded.chat_template == DEEPSEEK_CODER_CHAT_TEMPLATE


def test_not_a_tokenizer_directory_is_a_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="no tokenizer.json"):
        Tokenizer.from_dir(tmp_path / "missing")
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="not a Hugging Face tokenizer"):
        Tokenizer.from_dir(tmp_path)


def test_tokenizer_without_fim_tokens_is_a_user_error(tokenizer_dir: Path, tmp_path: Path):
    data = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != special.FIM_HOLE]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(UserError, match="not a DeepSeek-Coder tokenizer"):
        Tokenizer.from_dir(tmp_path)


def release_like_directory(tokenizer_dir: Path, directory: Path) -> Path:
    """Our trained files rearranged the way the release stores them: the 13 non-UTF-8 byte
    characters as added tokens, every added token normalized, only BOS/EOS flagged special."""
    data = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocabulary = data["model"]["vocab"]
    byte_tokens = [
        {"id": vocabulary.pop(char), "content": char, "special": False}
        for char in special.NON_UTF8_BYTE_CHARS
    ]
    flagged = (special.BOS, special.EOS)
    named = [
        {"id": token["id"], "content": token["content"], "special": token["content"] in flagged}
        for token in data["added_tokens"]
    ]
    flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": True}
    data["added_tokens"] = [{**token, **flags} for token in byte_tokens + named]
    directory.mkdir()
    (directory / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    shutil.copy(tokenizer_dir / "tokenizer_config.json", directory / "tokenizer_config.json")
    return directory


def test_release_layout_loads_with_the_same_ids(tokenizer_dir: Path, tmp_path: Path):
    transformers = pytest.importorskip("transformers")
    directory = release_like_directory(tokenizer_dir, tmp_path / "release-like")
    ours = Tokenizer.from_dir(directory)
    theirs = transformers.AutoTokenizer.from_pretrained(str(directory))
    text = f"x = 'über'{special.FIM_HOLE}{special.EOT}\n"
    # transformers parses every added token in text; so do we when asked to.
    assert ours.encode(text, allow_special=True) == theirs.encode(text, add_special_tokens=False)
    assert ours.token_id("\u00fc") in ours.encode(text)  # as released: "ü" is an added token
    # FIM and chat tokens are not flagged special in the release, yet stay plain text by default.
    default = ours.encode(text)
    assert ours.fim_hole_id not in default and ours.eot_id not in default
    chat = ours.apply_chat_template([{"role": "user", "content": "hi"}])
    assert chat == list(theirs.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=True, add_generation_prompt=True
    )["input_ids"])
