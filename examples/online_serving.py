"""Qlib online serving from cas-repo: train a rolling series, promote, serve, roll back.

    python examples/online_serving.py     # store: ./data/cas (or $CAS_REPO); qlib files: ./online_qlib

Qlib's own ``OnlineManager`` and ``RollingStrategy`` run the routine; the one change is
``CasRollingStrategy(..., store=store)``: every model the routine trains becomes a version
of ``rolling_lgb.LGBModel`` (its rolling window in the lineage) and the online set is that
model's ``online`` alias. Signals are predictions of models loaded from the store. Moving
the alias back is the production rollback: the next signals come from the previous model,
and no model bytes are written.
"""

import os
from pathlib import Path

from cas_repo import ModelStore
from cas_repo.qlib_support import synthetic as syn

STORE = Path(os.environ.get("CAS_REPO", "data/cas")).absolute()
QLIB_DIR = Path("online_qlib").absolute()
WINDOW = 20


def main() -> None:
    frame = syn.make_frame(n_instruments=30, n_days=160, n_features=6, signal=0.5)
    days = frame.index.get_level_values("datetime").unique()
    task = syn.rolling_task(frame, QLIB_DIR, train_days=60, valid_days=20, test_days=WINDOW)
    with syn.offline_qlib(QLIB_DIR), ModelStore(STORE) as store:
        from qlib.workflow.online.manager import OnlineManager
        from qlib.workflow.task.gen import RollingGen

        from cas_repo.qlib_support.online import CasRollingStrategy

        strategy = CasRollingStrategy("rolling_lgb", task, RollingGen(step=WINDOW, rtype=RollingGen.ROLL_SD),
                                      store=store)
        manager = OnlineManager(strategy, begin_time=days[100])
        manager.first_train()  # window 1, promoted: online -> v1
        for day in (days[101], days[121]):  # each routine trains the next window and promotes it
            manager.routine(day)
        model_id = strategy.tool.online_models()[0].model_id
        served = manager.prepare_signals(over_write=True)
        print(f"serving {model_id}@online = v{store.aliases(model_id)['online']}: "
              f"{len(served)} signals up to {served.index.get_level_values(0).max():%Y-%m-%d}")

        # The newest model misbehaves: production rollback = move the alias back.
        previous = store.set_alias(model_id, "online", 2)
        rolled = manager.prepare_signals(over_write=True)
        newest = rolled.loc[days[120]:]
        changed = (newest != served.loc[days[120]:]).mean()
        print(f"rolled back: online v{previous} -> v2; {changed:.0%} of the newest window's signals changed")

        print(f"{'version':>7}  {'test window':<23}  recorder")
        for md in store.history(model_id):
            test = md.lineage["segments"]["test"]
            print(f"{md.version:>7}  {test[0][:10]}..{test[1][:10]}  {md.qlib_recorder_id}")
        print("what was online when:")
        for move in store.alias_history(model_id, "online"):
            was = "-" if move.from_version is None else f"v{move.from_version}"
            print(f"  {move.moved_at:%Y-%m-%d %H:%M:%S}  {was} -> v{move.to_version}")
        print(f"online now: {model_id}@online = v{store.load_model(f'{model_id}@online')[1].version}")


if __name__ == "__main__":
    main()
