"""A drawing of how the tasks use the backbones: encoders, each task's inputs, its head, and the decoder it writes
with; redrawn as the project changes."""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPalette, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from qarac_gui.core.kinds import HEAD_KINDS
from qarac_gui.core.project.config import Project
from qarac_gui.ui.document import ProjectDocument

MARGIN, GAP, MAX_GAP = 8.0, 22.0, 64.0     # around the drawing; between its columns
PAD = 10.0                       # a box's text from its sides
ROW, BAND_GAP = 30.0, 12.0       # one input per row; space between two tasks
BOX_H, BOX_GAP = 40.0, 10.0      # a backbone's box; at least this much between two
DECODER = QColor("#8a5cc2")
MISSING = QColor("#d04040")


@dataclass
class Node:
    key: str                     # what edges() names it by: a backbone, "task.input" or a task
    column: int                  # 0 encoders, 1 inputs, 2 heads, 3 decoders
    lines: list[str]             # the first one bold
    style: str                   # encoder | decoder | missing | input | reads | head
    tip: str = ""
    rect: QRectF = field(default_factory=QRectF)


def _backbone_of(spec: str) -> tuple[str, str]:
    backbone, _, column = spec.partition(":")
    return backbone.strip(), column.strip()


class BackboneGraph(QWidget):
    """Backbones -> each task's inputs -> the task's head (-> the decoder a decode head writes with)."""

    def __init__(self, document: ProjectDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("backbone_graph")
        self.document = document
        self.nodes: list[Node] = []
        self._edges: list[tuple[Node, Node]] = []
        self.selected = ""              # the backbone the tab edits, outlined
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(420)
        document.changed.connect(self._on_document_changed)
        self.refresh()

    # ------------------------------------------------------------------ the graph as data
    def edges(self) -> list[tuple[str, str]]:
        """(from, to) of every arrow: backbone -> "task.input" -> task, backbone -> task for a task without named
        inputs, and task -> decoder for a head that writes with one."""
        return [(a.key, b.key) for a, b in self._edges]

    def _build(self, project: Project) -> None:
        nodes: dict[tuple, Node] = {}
        edges: list[tuple[tuple, tuple]] = []
        used_by_inputs = set()
        for task in project.tasks:
            for spec in task.inputs.values():
                used_by_inputs.add(_backbone_of(spec)[0])

        def backbone(name: str, as_decoder: bool = False) -> tuple:
            bb = project.backbones.get(name)
            if bb is None:
                key = ("backbone", name)
                nodes.setdefault(key, Node(name, 3 if as_decoder else 0, [name or "(none)", "not defined"], "missing",
                                           f"No backbone is named {name!r}: add it in the list above, or choose "
                                           "another"))
                return key
            key = ("backbone", name)
            if key not in nodes:
                if bb.role == "decoder":
                    nodes[key] = Node(name, 3, [name, "decoder"], "decoder", f"{bb.model}\nwrites the target text")
                else:
                    pooling = f" · {bb.pooling}" if name in used_by_inputs else ""
                    nodes[key] = Node(name, 0, [name, f"encoder{pooling}"], "encoder",
                                      bb.model + (f"\nsentence vectors: {bb.pooling} pooling" if pooling else ""))
            return key

        for name in project.backbones:          # every backbone shows, used or not, in the project's order
            backbone(name)
        for task in project.tasks:
            kind = HEAD_KINDS.get(task.head.kind)
            head_key = ("head", task.name)
            shown = [f"{key}: {getattr(task.head, key)}" for key in getattr(kind, "expressions", ()) if
                     getattr(task.head, key, "")]
            nodes[head_key] = Node(task.name, 2, [task.name or "(unnamed)", kind.title if kind else task.head.kind,
                                                  " · ".join(shown)], "head", kind.help if kind else "")
            if task.inputs:
                for name, spec in task.inputs.items():
                    bb, column = _backbone_of(spec)
                    input_key = ("input", task.name, name)
                    nodes[input_key] = Node(f"{task.name}.{name}", 1, [f"{name}: {column or '?'}"], "input",
                                            f"Input {name} of {task.name}: column {column!r} read by {bb!r}")
                    edges.append((backbone(bb), input_key))
                    edges.append((input_key, head_key))
            else:
                columns = " + ".join(c for c in (task.data.text, task.data.text_pair) if c)
                reads_key = ("reads", task.name)
                nodes[reads_key] = Node("", 1, [columns], "reads", f"{task.name} reads {columns}")
                edges.append((backbone(task.backbone), head_key))
            if kind is not None and "decoder" in kind.options:
                edges.append((head_key, backbone(task.head.decoder, as_decoder=True)))
        self.nodes = list(nodes.values())
        self._edges = [(nodes[a], nodes[b]) for a, b in edges]
        self._reads = {key[1]: node for key, node in nodes.items() if key[0] == "reads"}

    # ------------------------------------------------------------------ layout
    def _layout(self, project: Project, width: float) -> float:
        columns = 4 if any(n.column == 3 for n in self.nodes) else 3
        natural = [0.0] * columns           # each column as wide as its longest line, if the width allows
        bold, small = QFont(self.font()), QFont(self.font())
        bold.setBold(True)
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.9))
        inputs = any(n.style == "input" for n in self.nodes)
        for n in self.nodes:
            if n.style == "reads" and inputs:       # the columns a task reads give way to the named inputs
                continue
            fonts = [bold if n.style not in ("input", "reads") else self.font()] + [small] * (len(n.lines) - 1)
            wide = max(QFontMetricsF(f).horizontalAdvance(s) for f, s in zip(fonts, n.lines))
            natural[n.column] = max(natural[n.column], wide + 2 * PAD)
        room = width - 2 * MARGIN - GAP * (columns - 1)
        scale = min(1.0, room / max(1.0, sum(natural)))
        widths = [w * scale for w in natural]
        gap = min(MAX_GAP, max(GAP, (width - 2 * MARGIN - sum(widths)) / (columns - 1)))
        x = max(MARGIN, (width - sum(widths) - gap * (columns - 1)) / 2)      # centred
        xs = []
        for w in widths:
            xs.append((x, w))
            x += w + gap
        xs += [(x, 0.0)] * (4 - columns)
        by_key = {n.key: n for n in self.nodes if n.column in (1, 2)}
        y = MARGIN
        for task in project.tasks:
            rows = max(1, len(task.inputs))
            band = rows * ROW
            names = list(task.inputs) or [None]
            for i, name in enumerate(names):
                node = by_key.get(f"{task.name}.{name}") if name is not None else self._reads.get(task.name)
                if node is not None:
                    x0, w0 = xs[1]
                    node.rect = QRectF(x0, y + i * ROW + 3, w0, ROW - 6)
            head = by_key.get(task.name)
            if head is not None:
                x2, w2 = xs[2]
                h = max(band - 6, 44.0)
                head.rect = QRectF(x2, y + (band - h) / 2 + 3, w2, h)
                band = max(band, h + 6)
            y += band + BAND_GAP
        bottom = max(y - BAND_GAP, MARGIN)
        for column in (0, 3):
            side = [n for n in self.nodes if n.column == column]
            wanted = {}
            for n in side:        # a backbone sits level with what it connects to
                ends = [b.rect.center().y() for a, b in self._edges if a is n and not b.rect.isNull()]
                ends += [a.rect.center().y() for a, b in self._edges if b is n and not a.rect.isNull()]
                wanted[id(n)] = sum(ends) / len(ends) if ends else float("inf")
            side.sort(key=lambda n: wanted[id(n)])
            top = MARGIN
            x0, w0 = xs[column]
            for n in side:
                want = wanted[id(n)] - BOX_H / 2 if wanted[id(n)] != float("inf") else top
                n.rect = QRectF(x0, max(top, want), w0, BOX_H)
                top = n.rect.bottom() + BOX_GAP
            overflow = top - BOX_GAP - max(bottom, MARGIN + BOX_H)
            if overflow > 0:            # pushed past the tasks: slide the column up, as far as its top allows
                shift = min(overflow, min((n.rect.top() - MARGIN for n in side), default=0))
                for n in side:
                    n.rect.translate(0, -shift)
            bottom = max([bottom] + [n.rect.bottom() for n in side])
        return bottom + MARGIN

    def refresh(self) -> None:
        project = self.document.project
        self._build(project)
        height = self._layout(project, max(self.width(), self.minimumWidth()))
        self.setFixedHeight(int(height) + 1)
        self.update()

    def _on_document_changed(self, section: str) -> None:
        self.refresh()

    def set_selected(self, name: str) -> None:
        self.selected = name
        self.update()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._layout(self.document.project, self.width())

    def sizeHint(self) -> QSize:
        return QSize(560, self.height())

    # ------------------------------------------------------------------ drawing
    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        text = pal.color(QPalette.ColorRole.Text)
        line = QColor(text)
        line.setAlpha(140)
        for a, b in self._edges:
            self._arrow(painter, a, b, line)
        for node in self.nodes:
            self._node(painter, node, pal)
        if not self.document.project.tasks:
            painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.rect().adjusted(0, 0, -int(MARGIN), 0),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             "Add a task to see what it reads.")
        painter.end()

    def _arrow(self, painter: QPainter, a: Node, b: Node, color: QColor) -> None:
        if a.rect.isNull() or b.rect.isNull():
            return
        if a.column == 0 and b.column == 2:       # through the text columns the task reads
            reads = self._reads.get(b.key)
            if reads is not None:
                self._curve(painter, a.rect, reads.rect, color, arrow=False)
                self._curve(painter, reads.rect, b.rect, color)
                return
        self._curve(painter, a.rect, b.rect, color)

    def _curve(self, painter: QPainter, a: QRectF, b: QRectF, color: QColor, arrow: bool = True) -> None:
        start = QPointF(a.right(), a.center().y())
        end = QPointF(b.left(), b.center().y())
        dx = max(12.0, (end.x() - start.x()) / 2)
        path = QPainterPath(start)
        path.cubicTo(start + QPointF(dx, 0), end - QPointF(dx, 0), end)
        painter.setPen(QPen(color, 1.4))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(path)
        if arrow:
            painter.setBrush(color)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.drawPolygon(QPolygonF([end, end + QPointF(-7, -4), end + QPointF(-7, 4)]))

    def _node(self, painter: QPainter, node: Node, pal: QPalette) -> None:
        text = pal.color(QPalette.ColorRole.Text)
        border = QColor(text)
        border.setAlpha(110)
        fill = pal.color(QPalette.ColorRole.Base)
        pen = QPen(border, 1.2)
        if node.style == "decoder":
            pen = QPen(DECODER, 1.8)
            fill = QColor(DECODER)
            fill.setAlpha(40)
        elif node.style == "missing":
            pen = QPen(MISSING, 1.6, Qt.PenStyle.DashLine)
        elif node.style == "head":
            fill = QColor(pal.color(QPalette.ColorRole.Highlight))
            fill.setAlpha(35)
        elif node.style == "reads":
            pen = QPen(border, 1.0, Qt.PenStyle.DotLine)
            fill = pal.color(QPalette.ColorRole.Window)
        if node.column in (0, 3) and node.key == self.selected and node.style != "missing":
            pen.setWidthF(3.0)
            if node.style != "decoder":
                pen.setColor(pal.color(QPalette.ColorRole.Highlight))
        painter.setPen(pen)
        painter.setBrush(fill)
        radius = 4.0 if node.style in ("input", "reads") else 6.0
        painter.drawRoundedRect(node.rect, radius, radius)
        lines = [s for s in node.lines if s]
        inner = node.rect.adjusted(PAD / 2, 2, -PAD / 2, -2)
        metrics = painter.fontMetrics()
        step = metrics.height()
        y = inner.center().y() - step * len(lines) / 2
        for i, s in enumerate(lines):
            font = QFont(self.font())
            font.setBold(i == 0 and node.style not in ("input", "reads"))
            if i > 0:
                font.setPointSizeF(max(6.0, font.pointSizeF() * 0.9))
            if node.style == "reads":
                font.setItalic(True)
            painter.setFont(font)
            color = MISSING if node.style == "missing" and i > 0 else text
            if i > 0 and node.style != "missing":
                color = QColor(text)
                color.setAlpha(190)
            painter.setPen(color)
            elided = painter.fontMetrics().elidedText(s, Qt.TextElideMode.ElideRight, int(inner.width()))
            painter.drawText(QRectF(inner.left(), y + i * step, inner.width(), step),
                             Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, elided)

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            at = QPointF(event.pos())
            node = next((n for n in self.nodes if n.rect.contains(at)), None)
            if node is not None:
                QToolTip.showText(event.globalPos(), "\n".join([*filter(None, node.lines), node.tip]), self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)
