"""The ML training app (widgets): dataset, hyper-parameters, train (AiiDA job), loss curve, parity, predict.

Model and checks: :mod:`mlkkr.apps.ml`.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as ipw

from mlkkr.apps import ml
from mlkkr.apps.loading import SLOW_IMPORTS, LazyApp
from mlkkr.apps.widgets import Field, Form, Progress, checked_submit, header, html_table, in_background
from mlkkr.errors import InputError

_WIDE = {"description_width": "170px"}


class MlTrainingApp(LazyApp):
    """Train ML models on datasets of the profile or the shared store, as AiiDA jobs."""

    slow_imports = (*SLOW_IMPORTS, "mlkkr.aiida.workflows", "mlkkr.aiida.functions", "mlkkr.archive.client")

    def __init__(self, background: bool = True) -> None:
        self._init_loading()
        self.form = Form()
        self.node = None
        # the model by UUID only: show_results runs in the process monitor's thread, whose ORM objects belong to
        # that thread's database session and cannot be read from the kernel's (a race that failed CI once)
        self.model_uuid = None
        self._monitor = None
        self._epochs = None
        self.group = ipw.Dropdown(options=[("(loading …)", None)], description="Dataset group", style=_WIDE,
                                  layout={"width": "700px"})
        self.group.observe(self._on_group, "value")
        refresh = ipw.Button(description="Refresh", icon="refresh")
        refresh.on_click(lambda _: self.refresh_groups())
        self.group_field = self.form.add(Field("group", ipw.HBox([self.group, refresh]),
                                               help="A Group of mlkkr datasets (made with the engine, or imported)."))
        self.archive = ipw.Dropdown(options=[("(loading …)", None)], description="or a published archive",
                                    style=_WIDE, layout={"width": "700px"})
        import_button = ipw.Button(description="Import", icon="download")
        import_button.on_click(lambda _: self.import_archive())
        self.archive_progress = Progress()
        self.archive_field = self.form.add(Field("archive", ipw.VBox([ipw.HBox([self.archive, import_button]),
                                                                      self.archive_progress])))
        self.kind_info = ipw.HTML("")
        self.hyper_box = ipw.VBox([])
        self.hyper: dict[str, ipw.Widget] = {}
        self.code_box = ipw.VBox([ipw.HTML('<span class="mlkkr-help">Loading codes …</span>')])
        self.code_field = self.form.add(Field("code", self.code_box, help="mlkkr@localhost trains on this server; "
                                              "set up a GPU computer's code for large models."))
        self.walltime = ipw.IntText(value=3600, description="wall time (s)", style=_WIDE)
        self.form.add(Field("walltime", self.walltime))
        self.train_button = ipw.Button(description="Train", button_style="primary", icon="play")
        self.train_button.add_class("mlkkr-train")
        self.train_button.on_click(lambda _: self.train())
        self.progress = Progress()
        self.tree_box = ipw.VBox([])
        self.loss_box = ipw.VBox([])
        self.results = ipw.VBox([])
        self.results.add_class("mlkkr-results")
        self.predict_box = ipw.VBox([])
        self._build_hyper("exchange")
        self._build_series()
        children = [
            header("ML training", "Learn exchange tensors (e3nn) or impurity potentials (Jacobi-Legendre ridge) "
                                  "from KKR or engine data; every training is an AiiDA job with full provenance."),
            self.loading,
            ipw.HTML("<h3>1. Dataset</h3>"), self.group_field, self.archive_field, self.kind_info,
            ipw.HTML("<h3>2. Model and hyper-parameters</h3>"), self.hyper_box,
            ipw.HTML("<h3>3. Resources</h3>"), self.code_field, self.form.fields["walltime"],
            ipw.HTML("<h3>4. Train</h3>"), self.train_button, self.form.general, self.progress, self.loss_box,
            self.tree_box, self.results, self.predict_box, self.series_box,
        ]
        super().__init__(children, background=background)

    # -- loading -----------------------------------------------------------------------------------

    def _load(self) -> None:
        from mlkkr.apps.codes import ensure_local_code, mlkkr_code_widget

        self.refresh_groups()
        self.refresh_archives()
        self.refresh_series_hosts()
        ensure_local_code()
        self.code = mlkkr_code_widget("Code", "mlkkr.train")
        self.code_box.children = [self.code]

    def refresh_groups(self) -> None:
        groups = ml.dataset_groups()
        self._groups = {g["label"]: g for g in groups}
        options = [(ml.group_label_text(g), g["label"]) for g in groups]
        self.group.options = [("(choose a dataset)", None), *options]
        if options:
            self.group.value = options[-1][1]

    def refresh_archives(self) -> None:
        try:
            from mlkkr.apps.archive import catalog

            entries = catalog()
        except Exception as exc:  # noqa: BLE001 - the store is optional for training
            self.archive.options = [(f"(shared store not reachable: {exc})", None)]
            return
        self.archive.options = [("(none)", None), *[(f"{e.name} v{e.version} — {e.title}", (e.name, e.version))
                                                    for e in entries]]

    def import_archive(self) -> None:
        from mlkkr.apps.archive import import_entry

        self.form.clear()
        if self.archive.value is None:
            self.form.show(InputError("archive", None, reason="choose a published archive to import"))
            return
        name, version = self.archive.value
        self.archive_progress.start(f"Importing {name} v{version} …")

        def work() -> None:
            report = import_entry(name, version)
            self.archive_progress.done(f"Imported {report['new_nodes']} new nodes from {name} v{version}.")
            self.refresh_groups()

        in_background(work, self.archive_progress)

    # -- form --------------------------------------------------------------------------------------

    def _on_group(self, change: dict) -> None:
        g = getattr(self, "_groups", {}).get(change["new"])
        if not g:
            self.kind_info.value = ""
            return
        kind = g["kinds"][0] if len(g["kinds"]) == 1 else None
        label = ml.KINDS.get(kind, "mixed kinds" if kind is None else f"none here ({kind} data)")
        self.kind_info.value = (f'<span class="mlkkr-help">Model: <b>{html.escape(label)}'
                                f"</b> ({g['records']} records).</span>")
        if kind in ml.HYPERS and kind != getattr(self, "_kind", None):
            self._build_hyper(kind)

    def _build_hyper(self, kind: str) -> None:
        self._kind = kind
        for name in [n for n in self.form.fields if n.startswith("hyper.")]:
            self.form.remove(name)
        self.hyper = {}
        fields = []
        for h in ml.HYPERS[kind]:
            cls = ipw.IntText if h.kind is int else ipw.FloatText
            w = cls(value=h.default, description=h.label, style=_WIDE)
            self.hyper[h.name] = w
            fields.append(self.form.add(Field(f"hyper.{h.name}", w, help=h.help)))
        self.hyper_box.children = fields

    def request(self) -> ml.TrainRequest:
        return ml.TrainRequest(group=self.group.value, hyper={k: w.value for k, w in self.hyper.items()},
                               code=getattr(getattr(self, "code", None), "value", None),
                               walltime=self.walltime.value)

    # -- train and follow --------------------------------------------------------------------------

    def train(self):
        self.results.children = []

        def check_and_submit():
            self.check_ready()
            return ml.submit(self.request())

        node = checked_submit(self.form, self.progress, check_and_submit)
        if node is None:
            return None
        self.node = node
        self._epochs = self.hyper["epochs"].value if "epochs" in self.hyper else None
        self.progress.start(f"Submitted {node.process_label}<{node.pk}>; waiting for the daemon …",
                            total=self._epochs)
        self.follow(node)
        return node

    def follow(self, node) -> None:
        import plotly.graph_objects as go
        from aiidalab_widgets_base import ProcessMonitor, ProcessNodesTreeWidget

        tree = ProcessNodesTreeWidget(title="Process tree")
        tree.value = node.uuid
        self.tree_box.children = [ipw.HTML("<b>Process tree</b> (live)"), tree]
        if ml.HYPERS.get(node.base.extras.get("mlkkr_kind", "")) and "epochs" in self.hyper:
            self.loss = go.FigureWidget(ml.loss_figure())
            self.loss.add_class("mlkkr-loss-plot")
            self.loss_box.children = [self.loss]
        self._monitor = ProcessMonitor(callbacks=[tree.update, self._poll], on_sealed=[self._on_sealed], timeout=2.0)
        self._monitor.value = node.uuid

    def _poll(self, uuid: str) -> None:
        from aiida import orm

        from mlkkr.apps.kkr import describe_state

        node = orm.load_node(uuid)
        _, text = describe_state(node)
        job = ml.training_job(node)
        history = ml.loss_history(job) if self.loss_box.children else []
        if history:
            epochs = [h["epoch"] for h in history]
            with self.loss.batch_update():
                self.loss.data[0].x, self.loss.data[0].y = epochs, [h["train_loss"] for h in history]
                self.loss.data[1].x, self.loss.data[1].y = epochs, [h["val_loss"] for h in history]
            text += f"; epoch {epochs[-1]}" + (f" of at most {self._epochs}" if self._epochs else "")
            self.progress.update(value=len(history), message=text)
        else:
            step = f"; {job.process_label}<{job.pk}> {job.process_state.value}" if job is not None else ""
            self.progress.update(message=text + step)

    def _on_sealed(self, uuid: str) -> None:
        from aiida import orm

        from mlkkr.apps.kkr import describe_state

        node = orm.load_node(uuid)
        self._poll(uuid)
        state, text = describe_state(node)
        if state != "finished":
            self.progress.fail(text)
            return
        self.progress.update(message=f"{text}; computing the parity plot …")
        self.show_results(node)
        self.progress.done(f"{text}; model stored as ModelData<{node.outputs.model.pk}>")

    def show_results(self, node) -> None:
        import plotly.graph_objects as go

        result = ml.parity(node)
        model = node.outputs.model
        self.model_uuid = model.uuid
        meta = model.meta
        figure = go.FigureWidget(result["figure"])
        figure.add_class("mlkkr-parity-plot")
        table = ipw.HTML(html_table(ml.error_headers(result["kind"]), ml.error_rows(result["tables"]),
                                    css_class="mlkkr-table mlkkr-error-table"))
        what = "pairs" if result["kind"] == "exchange" else "points"
        self.results.children = [ipw.HTML(f"<h3>Held-out errors ({result['n']} {what})</h3>"), table, figure]
        if result["kind"] == "exchange":
            self._build_predict(meta)

    # -- predict -----------------------------------------------------------------------------------

    def _build_predict(self, meta: dict) -> None:
        from mlkkr.greens.defects import MAGNETIC

        species = list(meta.get("species") or MAGNETIC)
        magnetic = [s for s in species if s in MAGNETIC] or species
        self.p_i = ipw.Dropdown(options=magnetic, value="Mn" if "Mn" in magnetic else magnetic[0],
                                description="species i", style=_WIDE)
        self.p_j = ipw.Dropdown(options=magnetic, value="Fe" if "Fe" in magnetic else magnetic[-1],
                                description="species j", style=_WIDE)
        self.p_off = [ipw.IntText(value=v, description=d, layout={"width": "140px"}) for v, d in
                      zip((1, 0, 0), ("j at a₁ ×", "a₂ ×", "a₃ ×"), strict=True)]
        hosts = sorted(meta.get("hosts") or {"ti": None})
        self.p_host = ipw.Dropdown(options=hosts, description="host", style=_WIDE)
        button = ipw.Button(description="Predict", icon="magic")
        button.on_click(lambda _: self.predict())
        self.p_out = ipw.HTML("")
        self.p_out.add_class("mlkkr-prediction")
        self.predict_field = self.form.add(Field("predict", ipw.VBox([self.p_host, self.p_i, self.p_j,
                                                                      ipw.HBox(self.p_off), button])))
        self.predict_box.children = [ipw.HTML("<h3>5. Predict a new pair</h3>"), self.predict_field, self.p_out]

    def predict(self) -> Any:
        """Predict the pair of the form (the ``predict`` calcfunction; see :func:`call_with_portal`).
        Returns the tensor when run at once (outside a kernel)."""
        from mlkkr.apps.loading import call_with_portal

        self.predict_field.clear()
        self.p_out.value = '<span class="mlkkr-help">Predicting …</span>'
        args = (self.model_uuid, self.p_i.value, self.p_j.value, tuple(w.value for w in self.p_off), self.p_host.value)
        return call_with_portal(lambda: self._predict(*args))

    def _predict(self, uuid: str, species_i: str, species_j: str, offset: tuple, host: str) -> Any:
        from aiida import orm

        try:
            tensor, node = ml.predict_pair(orm.load_node(uuid), species_i, species_j, offset, host)
        except Exception as exc:  # noqa: BLE001 - shown next to the form, not lost in the kernel
            self.p_out.value = ""
            self.predict_field.set_error(str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}")
            return None
        rows = [[axis, *[float(v) for v in tensor[k]]] for k, axis in enumerate("xyz")]
        self.p_out.value = (f"<b>J_ij (meV)</b> of {html.escape(species_i)}–{html.escape(species_j)} at "
                            f"{list(offset)}, J = {float(tensor.trace()) / 3:.4f} meV "
                            f"(prediction node {node.pk}){html_table(['', 'x', 'y', 'z'], rows)}")
        return tensor

    # -- real data: an impurity series with JuKKR ----------------------------------------------------

    def _build_series(self) -> None:
        self.series_form = Form()
        self.series_host = ipw.Dropdown(options=[("(loading …)", None)], description="converged host", style=_WIDE,
                                        layout={"width": "700px"})
        self.series_host.add_class("mlkkr-series-host")
        refresh = ipw.Button(description="Refresh", icon="refresh")
        refresh.on_click(lambda _: self.refresh_series_hosts())
        self.series_elements = ipw.Text(value="3d", description="elements", style=_WIDE)
        self.series_elements.add_class("mlkkr-series-elements")
        self.series_radius = ipw.FloatText(value=2.5, description="cluster radius (Å)", style=_WIDE)
        self.series_concurrent = ipw.IntText(value=1, description="embeddings at once", style=_WIDE)
        self.series_pairs = ipw.Text(value="", description="pairs (optional)", placeholder="e.g. Fe-Fe, Fe-Co",
                                     style=_WIDE)
        self.series_pairs.add_class("mlkkr-series-pairs")
        for name, widget, text in (
                ("series.host", ipw.HBox([self.series_host, refresh]), "A host SCF converged with JuKKR (run one "
                 "in the KKR launcher)."),
                ("series.elements", self.series_elements, "Element symbols, 3d or 4d, comma-separated (e.g. "
                 "Sc,Ti or 3d,4d)."),
                ("series.radius", self.series_radius, "2.5 Å: the impurity alone in fcc Cu; 2.6 Å: with its 12 "
                 "neighbours (minutes per element)."),
                ("series.max_concurrent", self.series_concurrent, "Embeddings running at the same time."),
                ("series.pairs", self.series_pairs, "Impurity pairs A-B, comma-separated: after the single "
                 "embeddings, the two clusters joined with B on A's nearest-neighbour site (combine_imps_wc); "
                 "their elements are added to the series.")):
            self.series_form.add(Field(name, widget, help=text))
        self.series_button = ipw.Button(description="Run series", button_style="primary", icon="play")
        self.series_button.add_class("mlkkr-series-run")
        self.series_button.on_click(lambda _: self.run_series())
        self.series_progress = Progress()
        self.series_progress.add_class("mlkkr-series-progress")
        self.series_results = ipw.VBox([])
        self.series_results.add_class("mlkkr-series-results")
        self.series_node_uuid = None
        self.series_box = ipw.VBox([
            ipw.HTML("<h3>Real data: an impurity series with JuKKR → ML-ES</h3>"
                     '<span class="mlkkr-help">Embeds each element in the converged host (kkr_imp_wc through the '
                     "daemon; embeddings an earlier series finished are reused), collects ΔV(r) of every KKRimp "
                     "run as one dataset, then fits the radial Jacobi–Legendre model leaving each element out in "
                     "turn.</span>"),
            *self.series_form.fields.values(), self.series_button, self.series_form.general, self.series_progress,
            self.series_results])

    def refresh_series_hosts(self) -> None:
        hosts = ml.series_hosts(promote=False)
        self.series_host.options = [("(no converged host yet: run one in the KKR launcher)", None)] if not hosts \
            else hosts
        self.series_host.value = self.series_host.options[0][1]

    def series_request(self) -> ml.SeriesRequest:
        return ml.SeriesRequest(host=self.series_host.value, elements=self.series_elements.value,
                                radius=self.series_radius.value, max_concurrent=self.series_concurrent.value,
                                pairs=self.series_pairs.value)

    def run_series(self):
        self.series_results.children = []
        node = checked_submit(self.series_form, self.series_progress, lambda: ml.submit_series(self.series_request()))
        if node is None:
            return None
        self.series_node_uuid = node.uuid
        self.series_progress.start(f"Submitted {node.process_label}<{node.pk}>; "
                                   f"{len(node.inputs.elements.get_list())} embeddings …")
        from aiidalab_widgets_base import ProcessMonitor

        self._series_monitor = ProcessMonitor(callbacks=[self._series_poll], on_sealed=[self._series_sealed],
                                              timeout=2.0)
        self._series_monitor.value = node.uuid
        return node

    def _series_poll(self, uuid: str) -> None:
        from aiida import orm

        node = orm.load_node(uuid)
        self.series_progress.update(message=f"{node.process_label}<{node.pk}>: {ml.series_progress(node)}")

    def _series_sealed(self, uuid: str) -> None:
        from aiida import orm

        from mlkkr.apps.kkr import describe_state

        node = orm.load_node(uuid)
        state, text = describe_state(node)
        if state != "finished":
            self.series_progress.fail(text)
            return
        self.series_progress.update(message=f"{text}; {ml.series_progress(node)}; fitting ML-ES, each element "
                                            "held out in turn …")
        try:
            self.show_series(node)
        except InputError as exc:  # e.g. fewer than four usable elements
            self.series_progress.fail(f"{text}; dataset {node.outputs.dataset.pk} stored, no fit: {exc}")
            return
        self.series_progress.done(f"{text}; dataset DatasetData<{node.outputs.dataset.pk}> "
                                  f"({ml.series_progress(node)})")

    def show_series(self, node) -> None:
        import plotly.graph_objects as go

        fit = ml.series_fit(node)
        s = fit["summary"]
        rows = [[el, f"{m:.2f}", "—" if b is None else f"{b:.2f}"] for el, m, b in fit["rows"]]
        table = ipw.HTML(html_table(["held-out element", "ML-ES relative RMSE (%)", "nearest element (%)"], rows,
                                    css_class="mlkkr-table mlkkr-series-table"))
        figure = go.FigureWidget(fit["figure"])
        figure.add_class("mlkkr-series-plot")
        self.series_results.children = [
            ipw.HTML(f"<b>Leave-one-element-out</b> over {len(fit['elements'])} embeddings: median relative RMSE "
                     f"{100 * s['median_relative_rmse']:.2f} % (nearest element of the table: "
                     f"{100 * s['baseline_median_relative_rmse']:.2f} %)."),
            table, figure]
