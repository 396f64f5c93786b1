"""LossPlot: train loss (raw and EMA) and validation loss over steps, with change marks."""

from __future__ import annotations

import numpy as np
from textual_plotext import PlotextPlot

from ...trainer import Snapshot
from .text import downsample


class LossPlot(PlotextPlot):
    """The loss curves. Only this class knows the plot library, so a change of library stays here."""

    BORDER_TITLE = "loss (nats/char)"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.log_scale = False
        self._drawn = (-1, None, None)

    def toggle_log(self) -> bool:
        self.log_scale = not self.log_scale
        self._drawn = (-1, None, None)
        return self.log_scale

    def show(self, snap: Snapshot) -> None:
        """Redraw from ``snap`` if the data or the size changed since the last draw."""
        key = (snap.version, self.size, self.log_scale)
        if key == self._drawn or not self.size.width:
            return
        self._drawn = key
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        width = max(10, self.size.width - 10)
        hist = snap.history
        title = "loss nats/char"
        if snap.loss_ema is not None:
            title += f" [$accent]ema {snap.loss_ema:.3f}[/]"
        if snap.val_loss is not None:
            title += f" [$warning]val {snap.val_loss:.3f}[/]"
        self.border_title = title
        self.border_subtitle = f"{'log' if self.log_scale else 'lin'} (l) · [dim]grey raw · magenta: change[/]"
        drawn = False
        for name, colour, marker in (("loss", "gray", "dot"), ("loss_ema", "cyan", "braille"),
                                     ("val_loss", "orange", "hd")):
            x, y = hist.get(name, (np.empty(0), np.empty(0)))
            if len(x) == 0:
                continue
            ok = np.isfinite(y) & (y > 0)
            x, y = x[ok], y[ok]
            if len(x) == 0:
                continue
            if name != "val_loss":
                x, y = downsample(x, width), downsample(y, width)
            plt.plot(x.tolist(), y.tolist(), color=colour, marker=marker)
            drawn = True
        if drawn:
            xs = hist["loss"][0]
            if len(xs) > 1:
                ticks = sorted(set(np.linspace(xs[0], xs[-1], 5).round().astype(int).tolist()))
                plt.xticks(ticks)
            for c in snap.changes:
                if c.step > 0 and c.text not in ("paused", "resumed", "started") and "saved" not in c.text:
                    plt.vline(c.step, "magenta")
        plt.yscale("log" if self.log_scale and drawn else "linear")
        plt.xlabel("step")
        self.refresh()
