import json
from dataclasses import asdict

import pytest
import torch

from diffpid.errors import ConditionError, ModelLoadError, ParameterError
from diffpid.shapes.model import (
    ShapesConfig, build_components, encode_captions, generate_images, load_components, save_components, tokenize)
from diffpid.shapes.training.loss import logsnr_table, sample_timesteps
from diffpid.shapes.training.settings import TrainSettings
from diffpid.shapes.training.train import Trainer, train

TINY = ShapesConfig(channels=(8, 16), text_hidden=16, text_layers=1, text_heads=2, attention_head_dim=8, norm_groups=4,
                    text_encoder="t5")
# the recipe's parse pretraining and frozen encoder off: these tests train the whole model for a few steps
SETTINGS = TrainSettings(batch_size=4, warmup=2, checkpoint_every=2, parse_pretrain=0, freeze_text_encoder=False)


def _eps(comps, captions):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(len(captions), 3, 32, 32, generator=g)
    t = torch.tensor([10, 500, 900][: len(captions)])
    with torch.no_grad():
        return comps.unet(x, t, encoder_hidden_states=encode_captions(comps, captions)).sample


@pytest.mark.parametrize("encoder, cls", [("t5", "T5EncoderModel"), ("clip", "CLIPTextModel"),
                                          ("bert", "BertModel")])
def test_folder_round_trip_gives_the_same_outputs(tmp_path, encoder, cls):
    from dataclasses import replace

    from transformers import AutoTokenizer

    comps = build_components(replace(TINY, text_encoder=encoder), seed=3)
    comps.unet.eval(), comps.text_encoder.eval()
    save_components(comps, tmp_path / "m", {"steps": 0})
    index = json.loads((tmp_path / "m" / "model_index.json").read_text())
    assert index["unet"] == ["diffpid", "CoordUNet2DConditionModel"] and "vae" not in index
    assert index["text_encoder"] == ["transformers", cls]
    loaded = load_components(tmp_path / "m")
    assert type(loaded.text_encoder).__name__ == cls
    caps = ["a red circle", "", "a big blue box left of a small triangle"]
    assert torch.equal(_eps(comps, caps), _eps(loaded, caps))
    tok = AutoTokenizer.from_pretrained(tmp_path / "m" / "tokenizer")
    ids = tok(["a red circle"], padding="max_length", max_length=tok.model_max_length).input_ids[0]
    assert len(ids) == 16 and ids[:5] == [2, 4, 7, 14, 3] and set(ids[5:]) == {0}


def test_t5_encoder_reads_the_whole_caption_and_clip_only_the_words_before():
    """Why the shapes model uses T5: the first object's tokens must know the relation after them."""
    from dataclasses import replace

    a, b = "a red circle left of a blue box", "a red circle right of a blue box"
    for encoder, sees_later_words in (("t5", True), ("clip", False), ("bert", True)):
        comps = build_components(replace(TINY, text_encoder=encoder), seed=0)
        comps.text_encoder.eval()
        with torch.no_grad():
            ea, eb = encode_captions(comps, [a, b])
        first_object = slice(0, 4)  # <bos> a red circle
        changed = (ea[first_object] - eb[first_object]).abs().max().item()
        assert (changed > 1e-3) == sees_later_words, (encoder, changed)
        assert (ea[4:] - eb[4:]).abs().max() > 1e-3  # the relation token itself differs in both


def test_bert_tells_attribute_swapped_captions_apart_from_the_start():
    """Why BERT: absolute positions. "red ... blue" and "blue ... red" have the same words; a
    cross-attention reads its keys as a set, so an encoder whose tokens do not know their
    place gives both captions the same set and the UNet cannot bind colours to shapes."""
    from dataclasses import replace

    a, b = "a red circle left of a blue box", "a blue circle left of a red box"
    comps = build_components(replace(TINY, text_encoder="bert"), seed=0)
    comps.text_encoder.eval()
    with torch.no_grad():
        ea, eb = encode_captions(comps, [a, b])
    # the red token (word 2 of a, word 7 of b) differs with its place: not a bag of words
    assert (ea[2] - eb[7]).abs().max() > 0.1
    # and the two captions' sets of token vectors differ (sorted per feature, order-free)
    assert (ea.sort(0).values - eb.sort(0).values).abs().max() > 0.1
    # the position embeddings are as large as the word embeddings (both N(0, 0.02) at init)
    emb = comps.text_encoder.embeddings
    ratio = emb.position_embeddings.weight.std() / emb.word_embeddings.weight.std()
    assert 0.7 < ratio < 1.4


def test_unknown_text_encoder_is_rejected(tmp_path):
    from dataclasses import replace

    with pytest.raises(ParameterError, match="text_encoder 'gpt2'"):
        build_components(replace(TINY, text_encoder="gpt2"))
    comps = build_components(TINY)
    save_components(comps, tmp_path / "m")
    index = json.loads((tmp_path / "m" / "model_index.json").read_text())
    index["text_encoder"] = ["transformers", "GPT2Model"]
    (tmp_path / "m" / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="GPT2Model"):
        load_components(tmp_path / "m")


def test_old_configs_without_an_encoder_name_are_clip():
    from dataclasses import asdict

    from diffpid.shapes.model import config_from_dict

    old = {k: v for k, v in asdict(TINY).items() if k not in ("text_encoder", "coordinates")}
    assert config_from_dict(old).text_encoder == "clip" and config_from_dict(old).coordinates is False
    assert config_from_dict(asdict(TINY)) == TINY


def test_init_from_widens_a_plain_unet_and_keeps_a_fresh_text_encoder_of_another_class(tmp_path):
    from dataclasses import replace

    source = build_components(replace(TINY, text_encoder="clip", coordinates=False), seed=7)
    source.unet.eval()
    save_components(source, tmp_path / "src")
    out = tmp_path / "run"
    trainer = train(out, 0, config=TINY, settings=SETTINGS, progress=False, init_from=tmp_path / "src")
    assert trainer.settings.init_from == f"{tmp_path / 'src'} (unet)"
    want = source.unet.state_dict()
    for name, p in trainer.components.unet.state_dict().items():
        if name == "conv_in.weight":  # 3 image channels copied, 2 coordinate channels zero
            assert p.shape[1] == 5 and torch.equal(p[:, :3], want[name]) and not p[:, 3:].any()
        else:
            assert torch.equal(p, want[name]), name
    for e, p in zip(trainer.ema, trainer.params):
        assert torch.equal(e, p)
    # zero coordinate weights: the widened UNet computes exactly what the plain one did
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(1))
    trainer.components.unet.eval()
    with torch.no_grad():
        assert torch.allclose(trainer.components.unet(x, 50, cond).sample, source.unet(x, 50, cond).sample, atol=1e-6)
    fresh = Trainer(TINY, SETTINGS)  # same seed, no init: the text encoder is the same fresh T5
    assert type(trainer.components.text_encoder).__name__ == "T5EncoderModel"
    for a, b in zip(fresh.components.text_encoder.parameters(), trainer.components.text_encoder.parameters()):
        assert torch.equal(a, b)
    trainer.components.unet.train()
    trainer.train_step()
    trainer.save(out)
    assert Trainer.load(out).settings.init_from == f"{tmp_path / 'src'} (unet)"
    with pytest.raises(ParameterError, match="drop it when resuming"):
        train(out, 2, resume=True, progress=False, init_from=tmp_path / "src")


def test_init_from_copies_a_text_encoder_of_the_same_architecture(tmp_path):
    source = build_components(TINY, seed=7)
    save_components(source, tmp_path / "src")
    trainer = train(tmp_path / "run", 0, config=TINY, settings=SETTINGS, progress=False, init_from=tmp_path / "src")
    assert trainer.settings.init_from.endswith("(unet, text_encoder)")
    # the recorded command names the folder alone, so it can be run as it is (older histories: the same)
    from diffpid.shapes.training.recipe import recipe_commands

    assert f" --init-from {tmp_path / 'src'} --batch-size 4 " in recipe_commands(trainer.history, TINY, reached=2)[0][0]
    old = [{**trainer.history[0], "init_from": f"{tmp_path / 'src'} (unet, text_encoder)"}]
    assert recipe_commands(old, TINY, reached=2) == recipe_commands(trainer.history, TINY, reached=2)
    for a, b in zip(source.text_encoder.parameters(), trainer.components.text_encoder.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(source.unet.parameters(), trainer.components.unet.parameters()):
        assert torch.equal(a, b)


def test_init_from_rejects_other_architectures_and_missing_folders(tmp_path):
    from dataclasses import replace

    save_components(build_components(replace(TINY, channels=(8, 8))), tmp_path / "other")
    with pytest.raises(ParameterError, match="does not fit this architecture"):
        train(tmp_path / "a", 0, config=TINY, settings=SETTINGS, progress=False, init_from=tmp_path / "other")
    with pytest.raises(ParameterError, match="no unet/"):
        train(tmp_path / "b", 0, config=TINY, settings=SETTINGS, progress=False, init_from=tmp_path / "nothing")


def test_coordinate_unet_sees_position_and_round_trips(tmp_path):
    from diffpid.shapes.coord_unet import CoordUNet2DConditionModel

    comps = build_components(TINY, seed=2)
    assert isinstance(comps.unet, CoordUNet2DConditionModel) and comps.unet.config.in_channels == 3
    comps.unet.eval()
    # a constant image has no position in it but the coordinates: the output still varies across x
    with torch.no_grad():
        torch.nn.init.normal_(comps.unet.conv_in.weight[:, 3:])
        flat = torch.zeros(1, 3, 32, 32)
        out = comps.unet(flat, 500, torch.zeros(1, 16, 16)).sample[0]
    assert (out[:, 12:20, 4] - out[:, 12:20, 27]).abs().max() > 1e-3
    save_components(comps, tmp_path / "m")
    index = json.loads((tmp_path / "m" / "model_index.json").read_text())
    assert index["unet"] == ["diffpid", "CoordUNet2DConditionModel"]
    loaded = load_components(tmp_path / "m")
    assert isinstance(loaded.unet, CoordUNet2DConditionModel)
    caps = ["a red circle", "a box left of a circle"]
    assert torch.equal(_eps(comps, caps), _eps(loaded, caps))
    index["unet"] = ["diffpid", "MysteryUNet"]
    (tmp_path / "m" / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="MysteryUNet"):
        load_components(tmp_path / "m")


def test_scheduler_covers_the_estimator_range():
    table = logsnr_table(build_components(TINY))
    assert table.max() > 8 and table.min() < -6 and (table[1:] < table[:-1]).all()


def test_timesteps_concentrate_on_the_middle_log_snr():
    table = logsnr_table(build_components(TINY))
    t = sample_timesteps(20000, table, SETTINGS, torch.Generator().manual_seed(0))
    a = table[t]
    inside = ((a > -5) & (a < 7)).float().mean()
    assert inside > 0.85 and t.min() >= 0 and t.max() < 1000
    # the logistic part has median at its location
    assert abs(float(a.median()) - SETTINGS.logsnr_loc) < 0.5


def test_unknown_words_raise_before_the_model_runs():
    comps = build_components(TINY)
    with pytest.raises(ConditionError, match="'purple'"):
        tokenize(comps.tokenizer, ["a purple circle"])


def test_training_resumes_exactly(tmp_path):
    straight = Trainer(TINY, SETTINGS)
    losses = [straight.train_step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    first = Trainer(TINY, SETTINGS)
    first.train_step(), first.train_step()
    first.save(tmp_path)
    resumed = Trainer.load(tmp_path)
    assert resumed.step == 2
    assert resumed.train_step() == losses[2]
    for a, b in zip(straight.params, resumed.params):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema, resumed.ema):
        assert torch.equal(a, b)
    assert torch.equal(straight.generator.get_state(), resumed.generator.get_state())


def test_train_function_checkpoints_resumes_and_exports(tmp_path):
    out = tmp_path / "run"
    train(out, 2, config=TINY, settings=SETTINGS, progress=False)
    with pytest.raises(ParameterError):
        train(out, 3, config=TINY, settings=SETTINGS, progress=False)
    trainer = train(out, 3, resume=True, export=tmp_path / "model", progress=False)
    assert trainer.step == 3
    assert (out / "train.log").exists()
    info = json.loads((tmp_path / "model" / "training.json").read_text())
    assert info["steps"] == 3
    exported = load_components(tmp_path / "model")
    ema = trainer.ema_components()
    # the same weights; reloaded tensors may take other CPU kernels (AMD vs Intel), so float tolerance
    assert torch.allclose(_eps(exported, ["a box"]), _eps(ema, ["a box"]), rtol=1e-4, atol=1e-5)


def test_generate_images_shape_and_determinism():
    comps = build_components(TINY)
    comps.unet.eval(), comps.text_encoder.eval()
    for scheduler in ("ddim", "dpm"):
        a = generate_images(comps, ["a red circle", "a box"], seed=1, steps=2, scheduler=scheduler, chunk=1)
        b = generate_images(comps, ["a red circle", "a box"], seed=1, steps=2, scheduler=scheduler, chunk=2)
        assert a.shape == (2, 3, 32, 32) and a.abs().max() <= 1
        # batch 1 and batch 2 calls may take different CPU kernels; DPM-Solver's second order step
        # amplifies their last-bit differences to ~2e-4 on some CPUs, far below a change of noise (~1)
        assert torch.allclose(a, b, atol=1e-3)
    c = generate_images(comps, ["a red circle"], seed=1, steps=3, scheduler="ddpm")
    assert torch.equal(c, generate_images(comps, ["a red circle"], seed=1, steps=3, scheduler="ddpm"))
    with pytest.raises(ParameterError):
        generate_images(comps, ["a box"], scheduler="euler")
    assert generate_images(comps, [], steps=2).shape == (0, 3, 32, 32)


def test_missing_folder_raises_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError):
        load_components(tmp_path)


def test_generic_loader_reads_the_folder_and_matches_the_unet(tmp_path):
    from diffpid.shapes.model import load_shapes_model

    comps = build_components(TINY, seed=1)
    comps.unet.eval(), comps.text_encoder.eval()
    save_components(comps, tmp_path / "m")
    model = load_shapes_model(tmp_path / "m")
    assert tuple(model.data_shape) == (3, 32, 32)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = torch.tensor([0.0, 3.0])
    e = model.eps(x, a, [model.encode_prompt("a red circle"), model.unconditional()])
    t = model.timesteps(a)
    with torch.no_grad():
        cond = encode_captions(comps, ["a red circle", ""])
        direct = comps.unet(x, t, encoder_hidden_states=cond[:1].expand(2, -1, -1)).sample
        direct_u = comps.unet(x, t, encoder_hidden_states=cond[1:].expand(2, -1, -1)).sample
    assert torch.allclose(e[:, 0], direct, atol=1e-5) and torch.allclose(e[:, 1], direct_u, atol=1e-5)
    with pytest.raises(ConditionError):
        model.encode_prompt("a purple circle")


def test_loss_weighting_matches_its_formula():
    from dataclasses import replace

    from diffpid.shapes.training.loss import diffusion_loss
    from diffpid.shapes.render import sample_batch

    comps = build_components(TINY)
    table = logsnr_table(comps)
    batch = sample_batch(6, torch.Generator().manual_seed(0))
    plain = replace(SETTINGS, loss_weight_cap=0.0)
    weighted = replace(SETTINGS, loss_weight_cap=50.0)
    with torch.no_grad():
        l0 = diffusion_loss(comps, batch.images, batch.captions, plain, torch.Generator().manual_seed(3), table)
        l1 = diffusion_loss(comps, batch.images, batch.captions, weighted, torch.Generator().manual_seed(3), table)
        # recompute by hand with the same draws
        g = torch.Generator().manual_seed(3)
        t = sample_timesteps(6, table, SETTINGS, g)
        eps = torch.randn(batch.images.shape, generator=g)
        ac = comps.scheduler.alphas_cumprod[t].float().view(6, 1, 1, 1)
        x_t = ac.sqrt() * batch.images + (1 - ac).sqrt() * eps
        cond = encode_captions(comps, batch.captions)
        mse = ((comps.unet(x_t, t, encoder_hidden_states=cond).sample - eps) ** 2).mean(dim=(1, 2, 3))
    w = torch.clamp(1 + torch.exp(-table[t]), max=50.0)
    assert torch.allclose(l0, mse.mean(), rtol=1e-5)
    assert torch.allclose(l1, (w * mse).mean(), rtol=1e-5)
    assert w.max() > 1.5  # some draws are at low log-SNR, so the weighting matters


def test_agreement_term_matches_its_formula():
    """--agree-weight W adds W times the squared difference of the predictions with the caption and with the empty
    caption, summed over the scenes at log-SNR agree_from or above with a caption, over the batch size."""
    from dataclasses import replace

    from diffpid.shapes.training.loss import diffusion_loss
    from diffpid.shapes.render import sample_batch

    comps = build_components(TINY)
    table = logsnr_table(comps)
    batch = sample_batch(8, torch.Generator().manual_seed(0), empty=2)
    captions = batch.captions
    assert captions[-2:] == ("", "") and sum(map(bool, captions)) >= 5
    plain = replace(SETTINGS, loss_weight_cap=0.0)
    g = torch.Generator().manual_seed(3)
    t = sample_timesteps(8, table, SETTINGS, g)
    eps = torch.randn(batch.images.shape, generator=g)
    a0 = float(table[t].median())
    agree = replace(plain, agree_weight=7.0, agree_from=a0)
    with torch.no_grad():
        l0 = diffusion_loss(comps, batch.images, captions, plain, torch.Generator().manual_seed(3), table)
        l1 = diffusion_loss(comps, batch.images, captions, agree, torch.Generator().manual_seed(3), table)
        above = replace(agree, agree_from=float(table.max()) + 1)
        l2 = diffusion_loss(comps, batch.images, captions, above, torch.Generator().manual_seed(3), table)
        ac = comps.scheduler.alphas_cumprod[t].float().view(8, 1, 1, 1)
        x_t = ac.sqrt() * batch.images + (1 - ac).sqrt() * eps
        c = comps.unet(x_t, t, encoder_hidden_states=encode_captions(comps, captions)).sample
        u = comps.unet(x_t, t, encoder_hidden_states=encode_captions(comps, [""] * 8)).sample
    pick = torch.tensor([bool(x) for x in captions]) & (table[t] >= a0)
    assert 0 < pick.sum() < 8
    term = (((c - u) ** 2).mean(dim=(1, 2, 3)) * pick).sum() / 8
    assert torch.allclose(l1 - l0, 7.0 * term, rtol=1e-4, atol=1e-7) and term > 1e-6
    assert torch.equal(l2, l0)  # no scene at or above the threshold: the plain loss


def test_train_shapes_command_picks_the_encoder_and_the_complete_share(tmp_path, capsys):
    from diffpid.cli import main

    out = tmp_path / "run"
    assert main(["train-shapes", "--out", str(out), "--steps", "1", "--batch-size", "4", "--text-encoder", "bert",
                 "--complete-share", "0.5", "--parse-pretrain", "0", "--no-freeze-text-encoder"]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["config"]["text_encoder"] == "bert" and state["settings"]["complete_share"] == 0.5
    assert state["step"] == 1 and not state["settings"]["freeze_text_encoder"]
    recipe = json.loads((out / "model" / "training.json").read_text())["recipe"]  # exported to --out/model by default
    assert recipe["commands"] == ["diffpid train-shapes --out RUN --steps 1 --batch-size 4 --complete-share 0.5 "
                                  "--no-freeze-text-encoder --parse-pretrain 0 --threads 1"]
    capsys.readouterr()
    assert main(["train-shapes", "--out", str(tmp_path / "bad"), "--steps", "1", "--complete-share", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["diffpid: error: --complete-share 1.5: use a share from 0 to 1"]
    assert not (tmp_path / "bad").exists()


def test_pooled_text_embedding_starts_at_zero_from_a_model_without_one_and_round_trips(tmp_path):
    from dataclasses import replace

    pooled = replace(TINY, pooled_text=True)
    source = build_components(TINY, seed=7)
    source.unet.eval(), source.text_encoder.eval()
    save_components(source, tmp_path / "src")
    trainer = train(tmp_path / "run", 0, config=pooled, settings=SETTINGS, progress=False, init_from=tmp_path / "src")
    unet = trainer.components.unet.eval()
    assert unet.config.addition_embed_type == "text"
    assert not unet.add_embedding.norm2.weight.any() and not unet.add_embedding.norm2.bias.any()
    caps = ["a red circle left of a box", "a blue box"]
    with torch.no_grad():
        assert torch.allclose(_eps(trainer.components, caps), _eps(source, caps), atol=1e-6)
    # a pooled model whose summary path is live: folder round trip, and the summary reaches the output
    comps = build_components(pooled, seed=3)
    comps.unet.eval(), comps.text_encoder.eval()
    save_components(comps, tmp_path / "m")
    loaded = load_components(tmp_path / "m")
    assert loaded.unet.config.addition_embed_type == "text"
    assert torch.equal(_eps(comps, caps), _eps(loaded, caps))
    with torch.no_grad():
        comps.unet.add_embedding.norm2.weight.zero_()
        comps.unet.add_embedding.norm2.bias.zero_()
    assert not torch.allclose(_eps(comps, caps), _eps(loaded, caps), atol=1e-4)
    from dataclasses import asdict

    from diffpid.shapes.model import config_from_dict

    assert config_from_dict({k: v for k, v in asdict(TINY).items() if k != "pooled_text"}).pooled_text is False


def test_train_shapes_device_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    from diffpid.cli import main

    for device, says in [("bogus", "unknown device"), ("cuda", "asks for a GPU")]:
        if device == "cuda" and torch.cuda.is_available():
            continue
        capsys.readouterr()
        assert main(["train-shapes", "--out", str(tmp_path / device), "--steps", "1", "--device", device]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
        assert not (tmp_path / device).exists()


def test_a_gpu_stage_puts_its_device_in_the_recipe_command():
    from diffpid.shapes.model import ShapesConfig
    from diffpid.shapes.training.recipe import recipe_commands
    from diffpid.shapes.training.settings import TrainSettings

    settings = asdict(TrainSettings())
    history = [{"from": 0, "to": 100, "resume": False, "settings": settings, "threads": 1, "device": "cuda"},
               {"from": 100, "to": 200, "resume": True, "settings": settings, "threads": 2}]
    commands, _ = recipe_commands(history, ShapesConfig())
    assert commands == ["diffpid train-shapes --out RUN --steps 100 --threads 1 --device cuda",
                        "diffpid train-shapes --out RUN --steps 200 --resume --threads 2"]


def test_interrupted_stages_are_one_command_to_the_step_reached():
    """The from-scratch run's history: killed three times, resumed with the same settings."""
    from diffpid.shapes.model import ShapesConfig
    from diffpid.shapes.training.recipe import recipe_commands
    from diffpid.shapes.training.settings import TrainSettings

    settings = asdict(TrainSettings())
    history = [{"from": 0, "to": 20000, "resume": False, "settings": settings, "threads": 1},
               {"from": 600, "to": 20000, "resume": True, "settings": settings, "threads": 1},
               {"from": 1400, "to": 20000, "resume": True, "settings": settings, "threads": 1},
               {"from": 3200, "to": 20000, "resume": True, "settings": settings, "threads": 1}]
    assert recipe_commands(history, ShapesConfig(), reached=5400)[0] == [
        "diffpid train-shapes --out RUN --steps 5400 --threads 1"]
    # exporting with --steps 0 --resume on two threads trains nothing and adds no command
    export = history + [{"from": 5400, "to": 0, "resume": True, "settings": settings, "threads": 2}]
    assert recipe_commands(export, ShapesConfig(), reached=5400)[0] == [
        "diffpid train-shapes --out RUN --steps 5400 --threads 1"]
    # a stage on two threads is a second command; the first stage ends where the second resumed
    two = history + [{"from": 6000, "to": 7000, "resume": True, "settings": settings, "threads": 2}]
    assert recipe_commands(two, ShapesConfig(), reached=6800)[0] == [
        "diffpid train-shapes --out RUN --steps 6000 --threads 1",
        "diffpid train-shapes --out RUN --steps 6800 --resume --threads 2"]
    # a resume that changes a setting, then one that does not: the second carries the first further
    lower = {**settings, "lr": 2e-4}
    three = history[:2] + [{"from": 1000, "to": 2000, "resume": True, "settings": lower, "threads": 1},
                           {"from": 1500, "to": 2000, "resume": True, "settings": lower, "threads": 1}]
    assert recipe_commands(three, ShapesConfig())[0] == [
        "diffpid train-shapes --out RUN --steps 1000 --threads 1",
        "diffpid train-shapes --out RUN --steps 2000 --resume --lr 0.0002 --threads 1"]
