"""Everything corrgd prints with rich: the stages below compute, this module shows.

    estimate(...)        the dry run's tables: runs, epochs and cost per curve, the groups
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from corrgd.spec.cost import THROUGHPUTS, curve_costs, plan_groups
from corrgd.spec.sweeps import Plan, Sweep


def estimate(out: Console, sweep: Sweep, plan: Plan, *, device: str, group_size: int | None,
             free: int, assumed: str = "") -> None:
    """The dry run of `sweep`: runs, epochs and MACs per (data set / network, curve), then
    the groups a worker on `device` with `free` bytes of memory would form (`assumed`:
    what that memory is, where it is not this machine's)."""
    runs = f"{plan.runs}" if plan.exact else f"at most {plan.runs}"
    table = Table(title=f"sweep {sweep.name}: {runs} runs (dry run, nothing written)")
    for col in ("dataset / network", "algorithm", "runs", "epochs", "TMAC"):
        table.add_column(col, justify="left" if col[0].isalpha() and col != "runs" else "right")
    costs = curve_costs(plan)
    for (data, curve), (n, epochs, macs) in costs.items():
        table.add_row(data, curve, str(n), str(epochs), f"{macs / 1e12:,.1f}")
    out.print(table)
    total = sum(macs for _, _, macs in costs.values())
    hours = ", ".join(f"{name}: {total / rate / 3600:,.1f} h" for name, rate in THROUGHPUTS.items())
    out.print(f"{runs} runs, {plan.epochs} epochs, {total / 1e12:,.1f} TMAC in all ≈ {hours}")
    if not plan.exact:
        out.print("grids of the union overlap too intricately to count exactly: "
                  "the numbers above are upper bounds")

    plans = plan_groups(plan.groups.values(), device, group_size, free)
    size = f"--group-size {group_size}" if group_size else "automatic size"
    groups = Table(title=f"groups on {device} ({size})")
    for col in ("runs alike", "runs", "MB per member", "members per group", "groups"):
        groups.add_column(col, justify="left" if col == "runs alike" else "right")
    for p in plans:
        groups.add_row(p.label, str(p.runs), f"{p.member_mb:,.0f}", str(p.members),
                       str(p.groups))
    out.print(groups)
    out.print(f"{sum(p.groups for p in plans)} groups of runs that train together"
              + (f" ({assumed})" if assumed and not group_size else ""))
