"""Pre-training: does the LR range test pick a good learning rate, and what does streaming the blocks cost?

(a) Validation loss after `--steps` steps of the same small model, data, seed and schedule (cosine, 5% warm-up)
    with the learning rate `lr_find` suggests (`lr="auto"` in `pretrain`) against baselines measured in the same
    run: transformers' `TrainingArguments` default (5e-5, what a script that sets nothing trains with) and a grid of
    fixed rates around it, to show where the suggestion lands. One tokenizer (trained once) serves every run. Printed:
    validation loss and perplexity per rate, and perplexity(baseline) / perplexity(auto) for the default and for the
    best grid rate (>= 1 means the suggestion is as good as the best fixed rate tried).
(b) Streaming: blocks per second of one pass of `TokenBlocks` (documents read and tokenized one at a time, packed)
    against the in-memory baseline a script would write (every document read into a list, tokenized in one batch
    call, concatenated, cut), with the same blocks from both (checked), and the peak memory each adds (tracemalloc).

Corpus: `--dataset` (anything `open_corpus` takes), default the sample documents (data/sample). The CPU is shared
here: single runs vary by about +-10%. Run from the repository root (about 2 min with the defaults on a 2-core CPU):

    .venv/bin/python benchmarks/pretrain.py [--dataset PATH] [--steps 100] [--n-layer 2] [--d-model 128]
        [--block-size 64] [--batch-size 16] [--threads 1] [--seed 0] [--skip-lr]
"""
import argparse, hashlib, itertools, math, os, tempfile, time, tracemalloc, warnings
from array import array
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--dataset", default=None)
ap.add_argument("--steps", type=int, default=100)
ap.add_argument("--n-layer", type=int, default=2)
ap.add_argument("--d-model", type=int, default=128)
ap.add_argument("--block-size", type=int, default=64)
ap.add_argument("--batch-size", type=int, default=16)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--skip-lr", action="store_true", help="only (b)")
args = ap.parse_args()
os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
warnings.filterwarnings("ignore")

import torch
from transformers import AutoTokenizer
from llmops_nb.corpus import sample_dir
from llmops_nb.pretrain import PretrainConfig, TokenBlocks, open_corpus, pretrain, split_texts, train_tokenizer

torch.set_num_threads(args.threads)
print(f"load average before: {os.getloadavg()}")
corpus = open_corpus(args.dataset or sample_dir())
tmp = Path(tempfile.mkdtemp())
tok_dir = train_tokenizer(corpus, tmp / "tok", vocab_size=2048, val_frac=0.1)
tok = AutoTokenizer.from_pretrained(str(tok_dir))
print(f"corpus {corpus}, vocabulary {len(tok)}")

# (a) learning rates
base = dict(dataset=str(args.dataset or sample_dir()), tokenizer=str(tok_dir), vocab_size=2048, n_layer=args.n_layer,
            d_model=args.d_model, n_head=max(2, args.d_model // 64), block_size=args.block_size,
            batch_size=args.batch_size, max_steps=args.steps, eval_steps=args.steps, save_steps=args.steps,
            seed=args.seed, device="cpu", lr_find_steps=60)
results = {}
for lr in [] if args.skip_lr else ["auto", 5e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]:
    t0 = time.time()
    r = pretrain(PretrainConfig(**base, lr=lr), tmp / f"lr-{lr}", verbose=False)
    results[lr] = (r.metrics["lr"], r.metrics["eval_loss"], time.time() - t0)
    print(f"lr {str(lr):>6}: used {r.metrics['lr']:.2e}  validation loss {r.metrics['eval_loss']:.3f}  "
          f"perplexity {math.exp(r.metrics['eval_loss']):8.1f}  ({time.time() - t0:.0f} s)", flush=True)
if results:
    auto, grid = results["auto"][1], {k: v for k, v in results.items() if k != "auto"}
    best = min(grid, key=lambda k: grid[k][1])
    print(f"perplexity ratio default (5e-05) / auto ({results['auto'][0]:.2e}): {math.exp(grid[5e-5][1] - auto):.2f}x")
    print(f"perplexity ratio best fixed ({best}) / auto: {math.exp(grid[best][1] - auto):.2f}x")

# (b) streaming against the in-memory baseline; both hash their blocks as they go, so only the method's own memory counts
def fold(blocks) -> tuple:
    h, n = hashlib.sha256(), 0
    for b in blocks:
        h.update(array("l", b).tobytes())
        n += 1
    return n, h.hexdigest()


def in_memory():
    texts = list(split_texts(corpus, "train", 0.1))
    ids = list(itertools.chain.from_iterable(i + [tok.eos_token_id] for i in tok(texts, add_special_tokens=False)["input_ids"]))
    return fold(ids[i * args.block_size:(i + 1) * args.block_size] for i in range(len(ids) // args.block_size))


def measure(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    secs = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, secs, peak


streamed, s_secs, s_peak = measure(lambda: fold(b["input_ids"].tolist() for b in TokenBlocks(corpus, tok, args.block_size, "train", 0.1)))
loaded, l_secs, l_peak = measure(in_memory)
assert streamed == loaded, "streamed and in-memory blocks differ"
print(f"blocks {streamed[0]} (same digest): streamed {streamed[0] / s_secs:,.0f} blocks/s, peak {s_peak:.1f} MiB; in memory "
      f"{loaded[0] / l_secs:,.0f} blocks/s, peak {l_peak:.1f} MiB; speed streamed/in-memory {l_secs / s_secs:.2f}x, "
      f"memory in-memory/streamed {l_peak / s_peak:.1f}x")
print(f"load average after: {os.getloadavg()}")
