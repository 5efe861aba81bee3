"""Tool routing: does a question need a tool, which one, with which arguments. The trained router vs two baselines.

Setup: the sample orders database (`llmops_nb.tools.sample_orders_db()`) and its tools (`order_tools`). Questions:
`data/orders/router_heldout.jsonl` (84 questions written apart from the router's training questions, never trained
on: 28 order questions, 22 price and stock questions, 34 document questions that must not call a tool, many of them
hard negatives such as "What's your policy on cancelling orders?"). Routers, measured in the same run:

- always-RAG: never calls a tool (what the pipeline did before tools);
- regex: an order id in the question -> `order_status`, else a SKU or catalogue model number -> `product_price`,
  else no tool; arguments from the same extraction the router uses;
- router: `default_router()` (TF-IDF + logistic regression trained on `llmops_nb/assets/tools/router_train.jsonl`,
  with order ids, SKUs and product names as placeholders, plus the same argument extraction and fuzzy product names).

Metrics (`llmops_nb.tools.evaluate_router`): tool-choice accuracy (right tool, or rightly none) over all questions,
argument accuracy (exact arguments) over questions that need a tool; and per-question routing time (p50, ms, after
training). `--cv K` also reports K-fold cross-validated tool accuracy on the training questions. Run from the
repository root:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tools.py [--cv 5] [--misses]
"""
import argparse, random, statistics, time

from llmops_nb.tools import (ProductMatcher, ToolCall, ToolRouter, catalogue, default_router, evaluate_router,
                             find_order_id, load_router_rows, order_tools, orders_source_dir, router_train_path,
                             sample_orders_db)

ap = argparse.ArgumentParser()
ap.add_argument("--cv", type=int, default=5, help="folds of cross-validation on the training questions; 0: skip")
ap.add_argument("--misses", action="store_true", help="print the router's mistakes on the held-out questions")
a = ap.parse_args()

db = sample_orders_db()
tools, products = order_tools(db), catalogue(db)
rows = load_router_rows(orders_source_dir() / "router_heldout.jsonl")


class AlwaysRag:
    "Never calls a tool."

    def decide(self, question, toolset, generator=None):
        return None


class RegexRouter:
    "An order id -> order_status; else a SKU or model number -> product_price; else none."

    def __init__(self, products):
        self.matcher = ProductMatcher(products)

    def decide(self, question, toolset, generator=None):
        if oid := find_order_id(question):
            return ToolCall("order_status", {"order_id": oid})
        if sku := self.matcher.sku(question):
            return ToolCall("product_price", {"sku": sku})
        return None


t0 = time.perf_counter()
router = default_router(db)
train_s = time.perf_counter() - t0
results = {name: evaluate_router(r, rows, tools) for name, r in
           [("always-RAG", AlwaysRag()), ("regex", RegexRouter(products)), ("router", router)]}
ms = []
for r in rows:
    t = time.perf_counter()
    router.decide(r["question"], tools)
    ms.append((time.perf_counter() - t) * 1000)

print(f"held-out questions: {len(rows)} ({sum(1 for r in rows if r.get('tool'))} need a tool); "
      f"router trained in {train_s:.2f} s (sklearn import included)")
print(f"{'router':12} {'tool acc':>9} {'args acc':>9}")
for name, m in results.items():
    print(f"{name:12} {m['tool_accuracy']:9.3f} {m['args_accuracy']:9.3f}")
base = results["regex"]
print(f"router / regex: tool accuracy x{results['router']['tool_accuracy'] / base['tool_accuracy']:.2f}, "
      f"argument accuracy x{results['router']['args_accuracy'] / max(base['args_accuracy'], 1e-9):.2f}")
print(f"routing time per question: p50 {statistics.median(ms):.2f} ms, max {max(ms):.2f} ms")

if a.cv:
    train = load_router_rows(router_train_path())
    order = list(range(len(train)))
    random.Random(0).shuffle(order)
    hits = 0
    for k in range(a.cv):
        test_idx = set(order[k :: a.cv])
        fold = ToolRouter([train[i] for i in order if i not in test_idx], products)
        hits += sum(fold.predict(train[i]["question"])[0] == train[i].get("tool") for i in test_idx)
    print(f"{a.cv}-fold cross-validated tool accuracy on the {len(train)} training questions: {hits / len(train):.3f}")

if a.misses:
    for m in results["router"]["misses"]:
        print("miss:", m)
