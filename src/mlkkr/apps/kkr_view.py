"""The KKR launcher app (widgets): structure, impurities, backend, resources, submit, follow, results.

Model and checks: :mod:`mlkkr.apps.kkr`. Widgets from aiidalab-widgets-base: ``StructureManagerWidget``
(upload or examples, with its nglview viewer), ``ComputationalResourcesWidget`` (code picker with
set-up of new computers and codes), ``ProcessNodesTreeWidget`` and ``ProcessMonitor`` (the process
tree, followed live). Plots with plotly.
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path
from typing import Any

import ipywidgets as ipw

from mlkkr.apps import kkr
from mlkkr.apps.loading import SLOW_IMPORTS, LazyApp
from mlkkr.apps.widgets import Field, Form, Progress, checked_submit, header

_WIDE = {"description_width": "160px"}


def structure_viewer():
    """A weas-widget 3D view with a ``structure`` trait (ase.Atoms), as StructureManagerWidget's viewer.

    nglview 4.0.1, the default viewer of aiidalab-widgets-base, ships the front-end of 3.1.5 while its
    Python side asks for 4.0, so it does not render in JupyterLab 4 or Voila (nglview issue 1181);
    weas-widget is an anywidget and carries its own front-end.
    """
    import ase
    import traitlets as tl
    from weas_widget import WeasWidget

    class WeasStructureViewer(ipw.VBox):
        structure = tl.Instance(ase.Atoms, allow_none=True)

        def __init__(self) -> None:
            self.weas = WeasWidget(viewerStyle={"width": "640px", "height": "360px"})
            self.caption = ipw.HTML("")
            super().__init__([self.weas, self.caption])
            self.add_class("mlkkr-structure-viewer")

        @tl.observe("structure")
        def _show(self, change: dict) -> None:
            atoms = change["new"]
            if atoms is None:
                self.caption.value = ""
                return
            self.weas.from_ase(atoms)
            self.caption.value = (f'<span class="mlkkr-help">{html.escape(atoms.get_chemical_formula())}: '
                                  f"{len(atoms)} sites, cell {' × '.join(f'{x:.2f}' for x in atoms.cell.lengths())} Å"
                                  "</span>")

    return WeasStructureViewer()


def all_elements() -> list[str]:
    """Every element JuKKR can take (H … Pu)."""
    from ase.data import chemical_symbols

    return chemical_symbols[1:95]


class ImpurityRow(ipw.HBox):
    def __init__(self, index: int, element: str, site: int | None, on_remove, choices: list[str] | None = None) -> None:
        self.element = ipw.Dropdown(options=choices or kkr.element_choices(), value=element,
                                    description=f"Impurity {index}", style=_WIDE, layout={"width": "300px"})
        self.site = ipw.IntText(value=site if site is not None else 0, description="on site",
                                layout={"width": "180px"})
        self.element.add_class("mlkkr-impurity-element")
        self.site.add_class("mlkkr-impurity-site")
        remove = ipw.Button(description="remove", layout={"width": "80px"})
        remove.on_click(lambda _: on_remove(self))
        super().__init__([self.element, self.site, remove])


class KkrLauncherApp(LazyApp):
    """Launch KKR impurity calculations (JuKKR or the built-in engine) and see their results."""

    slow_imports = (*SLOW_IMPORTS, "weas_widget", "mlkkr.aiida.workflows", "mlkkr.aiida.kkr", "mlkkr.greens.inputs",
                    "ase.neighborlist")

    def __init__(self, background: bool = True) -> None:
        self._init_loading()
        self.form = Form()
        self.node = None
        self.structure_manager = None
        self._monitor = None
        # --- structure (filled by _load)
        self.structure_box = ipw.VBox([ipw.HTML('<span class="mlkkr-help">Loading the structure manager …</span>')])
        self.structure_field = self.form.add(Field("structure", self.structure_box,
                                                   help="Upload a structure or pick an example. The built-in "
                                                        "engine needs a simple-cubic host supercell."))
        self.sites_info = ipw.HTML("")
        # --- impurities
        self.rows: list[ImpurityRow] = []
        self.rows_box = ipw.VBox([])
        add = ipw.Button(description="Add impurity", icon="plus")
        add.add_class("mlkkr-add-impurity")
        add.on_click(lambda _: self.add_impurity("Fe", len(self.rows)))
        self.impurities_field = self.form.add(Field("impurities", ipw.VBox([self.rows_box, add, self.sites_info]),
                                                    help="Element and site index (0-based) of each impurity."))
        # --- method
        self.backend = ipw.ToggleButtons(options=[(v, k) for k, v in kkr.BACKENDS.items()], value="engine",
                                         description="Backend", style={**_WIDE, "button_width": "240px"})
        self.task = ipw.ToggleButtons(options=[(v, k) for k, v in kkr.TASKS.items()], value="exchange",
                                      description="Compute", style={**_WIDE, "button_width": "240px"})
        self.host = ipw.Dropdown(options=[("topological insulator (ti)", "ti"), ("single-band metal", "metal")],
                                 value="ti", description="Host model", style=_WIDE, layout={"width": "420px"})
        self.kgrid = ipw.IntText(value=16, description="k-grid n³", style=_WIDE)
        self.contour = ipw.IntText(value=24, description="energy points", style=_WIDE)
        self.screening = ipw.Checkbox(value=False, description="screen the potentials self-consistently first",
                                      style=_WIDE, layout={"width": "520px"})
        engine_fields = [self.form.add(Field("host", self.host)),
                         self.form.add(Field("kgrid", self.kgrid, help="k points per direction (cheapest: 12–16)")),
                         self.form.add(Field("contour_points", self.contour, help="semicircle contour points")),
                         self.screening]
        self.code_box = ipw.VBox([ipw.HTML('<span class="mlkkr-help">Loading codes …</span>')])
        self.code_field = self.form.add(Field("code", self.code_box, help="The mlkkr code on a computer "
                                              "(mlkkr@localhost: this server)."))
        self.engine_box = ipw.VBox([*engine_fields, self.code_field])
        self.jukkr_codes: dict[str, Any] = {}
        self._build_jukkr_form()
        self.backend.observe(self._on_backend, "value")
        # --- resources
        self.machines = ipw.IntText(value=1, description="machines", style=_WIDE)
        self.mpiprocs = ipw.IntText(value=1, description="MPI processes/machine", style=_WIDE)
        self.walltime = ipw.IntText(value=1800, description="wall time (s)", style=_WIDE)
        resources = ipw.VBox([self.form.add(Field("resources.num_machines", self.machines)),
                              self.form.add(Field("resources.num_mpiprocs_per_machine", self.mpiprocs)),
                              self.form.add(Field("resources.max_wallclock_seconds", self.walltime))])
        # --- submit, follow, results
        self.submit_button = ipw.Button(description="Submit", button_style="primary", icon="play")
        self.submit_button.add_class("mlkkr-submit")
        self.submit_button.on_click(lambda _: self.submit())
        self.progress = Progress()
        self.tree_box = ipw.VBox([])
        self.results = ipw.VBox([])
        self.results.add_class("mlkkr-results")
        children = [
            header("KKR launcher", "Impurities in a host crystal: exchange tensors and ΔV, with JuKKR or the "
                                   "built-in Green-function engine."),
            self.loading,
            ipw.HTML("<h3>1. Structure</h3>"), self.structure_field,
            ipw.HTML("<h3>2. Impurities</h3>"), self.impurities_field,
            ipw.HTML("<h3>3. Method</h3>"), self.backend, self.task, self.engine_box, self.jukkr_box,
            ipw.HTML("<h3>4. Resources</h3>"), resources,
            ipw.HTML("<h3>5. Submit</h3>"), ipw.HBox([self.submit_button]), self.form.general, self.progress,
            self.tree_box, self.results,
        ]
        self.add_impurity("Mn", 0)
        self.add_impurity("Fe", 1)
        super().__init__(children, background=background)

    # -- the JuKKR part of the form ----------------------------------------------------------------

    def _build_jukkr_form(self) -> None:
        from dataclasses import fields as dc_fields

        from mlkkr.apps.kkr import JUKKR_TASKS

        host_defaults = {f.name: f.default for f in dc_fields(_host_settings_class())}
        imp_defaults = {f.name: f.default for f in dc_fields(_impurity_settings_class())}
        self.jukkr_task = ipw.ToggleButtons(options=[(v, k) for k, v in JUKKR_TASKS.items()], value="scf",
                                            description="JuKKR step", style={**_WIDE, "button_width": "240px"})
        self.jukkr_task.add_class("mlkkr-jukkr-task")
        self.host_widgets = {
            "lmax": ipw.IntText(value=host_defaults["lmax"], description="lmax", style=_WIDE),
            "nspin": ipw.Dropdown(options=[1, 2], value=host_defaults["nspin"], description="NSPIN", style=_WIDE),
            "kmesh": ipw.IntText(value=host_defaults["kmesh"], description="k-mesh n³", style=_WIDE),
            "convergence": ipw.FloatText(value=host_defaults["convergence"], description="rms criterion",
                                         style=_WIDE),
            "max_iterations": ipw.IntText(value=host_defaults["max_iterations"], description="max iterations",
                                          style=_WIDE),
            "mag_init": ipw.Checkbox(value=host_defaults["mag_init"], description="start magnetic (e.g. bcc Fe)",
                                     style=_WIDE, layout={"width": "520px"}),
            "dos": ipw.Checkbox(value=host_defaults["dos"], description="compute the DOS of the converged host",
                                style=_WIDE, layout={"width": "520px"}),
        }
        helps = {"lmax": "2 converges fcc Cu and bcc Fe here in a minute or a few",
                 "kmesh": "fine mesh (kkr_scf_wc pre-converges on 10³)",
                 "convergence": "rms error of the potential at which the SCF stops"}
        self.host_box = ipw.VBox([self.form.add(Field(f"host.{k}", w, help=helps.get(k, "")))
                                  for k, w in self.host_widgets.items()])
        self.host_calc = ipw.Dropdown(options=[("(none yet: run a host SCF)", None)], description="converged host",
                                      style=_WIDE, layout={"width": "560px"})
        self.host_calc.add_class("mlkkr-host-calc")
        refresh = ipw.Button(description="refresh", icon="refresh", layout={"width": "100px"})
        refresh.on_click(lambda _: self.refresh_hosts())
        self.host_calc_field = self.form.add(Field("host_calc", ipw.HBox([self.host_calc, refresh]),
                                                   help="Converged hosts of your profile (Group mlkkr/kkr-hosts)."))
        self.radius = ipw.FloatText(value=2.5, description="cluster radius (Å)", style=_WIDE)
        self.radius.add_class("mlkkr-cluster-radius")
        self.imp_widgets = {
            "convergence": ipw.FloatText(value=imp_defaults["convergence"], description="rms criterion",
                                         style=_WIDE),
            "max_iterations": ipw.IntText(value=imp_defaults["max_iterations"], description="max iterations",
                                          style=_WIDE),
        }
        self.imp_box = ipw.VBox([
            self.form.add(Field("cluster_radius", self.radius, help="fcc Cu: 2.5 Å is the impurity alone (seconds); "
                                                                    "2.6 Å adds 12 neighbours (minutes)")),
            *[self.form.add(Field(f"impurity.{k}", w)) for k, w in self.imp_widgets.items()]])
        self.jij_radius = ipw.FloatText(value=5.0, description="J_ij radius (Å)", style=_WIDE)
        self.jij_soc = ipw.Checkbox(value=False, description="with spin–orbit coupling (J, D, S)", indent=False)
        self.jij_box = ipw.VBox([self.form.add(Field("jij_radius", self.jij_radius,
                                                     help="pairs up to this distance; the host must be magnetic")),
                                 self.form.add(Field("jij_soc", self.jij_soc,
                                                     help="Chebyshev solver, three magnetisation directions: "
                                                          "about three times the isotropic run"))])
        self.jukkr_codes_box = ipw.VBox([ipw.HTML('<span class="mlkkr-help">Loading codes …</span>')])
        self.jukkr_box = ipw.VBox([self.jukkr_task, self.host_box, self.host_calc_field, self.imp_box, self.jij_box,
                                   self.jukkr_codes_box])
        self.jukkr_box.layout.display = "none"
        self.jukkr_task.observe(lambda _: self._show_task(), "value")
        self._show_task()

    def _show_task(self) -> None:
        task = self.jukkr_task.value
        self.host_box.layout.display = None if task == "scf" else "none"
        self.host_calc_field.layout.display = "none" if task == "scf" else None
        self.imp_box.layout.display = None if task == "impurity" else "none"
        self.jij_box.layout.display = None if task == "jij" else "none"

    def refresh_hosts(self, select: int | None = None, promote: bool = True) -> None:
        """Fill the host list from the converged hosts (newest first); select ``select`` or the newest.

        ``promote=False`` (from the process monitor's thread) only reads: see ``converged_hosts``."""
        from mlkkr.aiida.kkr_results import converged_hosts

        hosts = converged_hosts(promote=promote)
        options = [(f"{h['pk']}: {h['formula']} — E_F {h['fermi_energy_ry']:.5f} Ry, NSPIN {h['nspin']} "
                     f"({h['label']})", h["pk"]) for h in hosts] or [("(none yet: run a host SCF)", None)]
        self.host_calc.options = options
        pks = [pk for _, pk in options]
        self.host_calc.value = select if select in pks else pks[0]

    # -- loading ---------------------------------------------------------------------------------

    def _load(self) -> None:
        import aiidalab_widgets_base as awb

        from mlkkr.apps.codes import ensure_local_code, mlkkr_code_widget

        folder = Path(tempfile.mkdtemp(prefix="mlkkr-examples-"))
        examples = []
        for k, (name, atoms) in enumerate(kkr.example_structures().items()):
            path = folder / f"example{k}.xyz"
            atoms.write(path, format="extxyz")
            examples.append((name, str(path)))
        self.structure_manager = awb.StructureManagerWidget(
            importers=[awb.StructureExamplesWidget(examples=examples, title="Examples"),
                       awb.StructureUploadWidget(title="Upload")],
            viewer=structure_viewer(), storable=False, node_class="StructureData")
        self.structure_manager.observe(self._on_structure, "structure")
        self.structure_box.children = [self.structure_manager]
        ensure_local_code()
        self.code = mlkkr_code_widget("Code", kkr.ENGINE_PLUGIN)
        self.code_box.children = [self.code]
        defaults = {"voronoi_code": "voronoi@localhost", "kkr_code": "kkrhost@localhost",
                    "kkrimp_code": "kkrimp@localhost"}
        for name, plugin, text in (("voronoi_code", "kkr.voro", "voronoi"), ("kkr_code", "kkr.kkr", "KKRhost"),
                                   ("kkrimp_code", "kkr.kkrimp", "KKRimp")):
            widget = awb.ComputationalResourcesWidget(description=f"{text} code", default_calc_job_plugin=plugin)
            _select_code(widget, defaults[name])
            self.jukkr_codes[name] = widget
        self.jukkr_codes_box.children = [
            self.form.add(Field(k, w, help="JuKKR built on this server (mlkkr jukkr build), or an HPC computer's"
                                if k == "kkr_code" else "")) for k, w in self.jukkr_codes.items()]
        self.refresh_hosts()

    # -- form ------------------------------------------------------------------------------------

    def add_impurity(self, element: str, site: int | None) -> ImpurityRow:
        choices = kkr.element_choices() if self.backend.value == "engine" else all_elements()
        row = ImpurityRow(len(self.rows), element, site, self._remove_row, choices)
        self.rows.append(row)
        self._relayout_rows()
        return row

    def _remove_row(self, row: ImpurityRow) -> None:
        self.rows.remove(row)
        self._relayout_rows()

    def _relayout_rows(self) -> None:
        for name in [n for n in self.form.fields if n.startswith("impurities[")]:
            self.form.remove(name)
        fields = []
        for k, row in enumerate(self.rows):
            row.element.description = f"Impurity {k}"
            fields.append(self.form.add(Field(f"impurities[{k}]", row)))
        self.rows_box.children = fields

    def _on_backend(self, change: dict) -> None:
        engine = change["new"] == "engine"
        self.engine_box.layout.display = None if engine else "none"
        self.task.layout.display = None if engine else "none"
        self.jukkr_box.layout.display = "none" if engine else None
        choices = kkr.element_choices() if engine else all_elements()
        for row in self.rows:
            value = row.element.value if row.element.value in choices else choices[0]
            row.element.options = choices
            row.element.value = value

    def _on_structure(self, change: dict) -> None:
        atoms = change["new"]
        if atoms is None:
            self.sites_info.value = ""
            return
        n = len(atoms)
        self.sites_info.value = (f'<span class="mlkkr-help">The structure {html.escape(atoms.get_chemical_formula())} '
                                 f"has {n} sites: indices 0 … {n - 1}.</span>")

    def request(self) -> kkr.KkrRequest:
        """The form's values as a :class:`~mlkkr.apps.kkr.KkrRequest`."""
        structure = self.structure_manager.structure if self.structure_manager is not None else None
        codes = {k: w.value for k, w in self.jukkr_codes.items()}
        host_settings = _host_settings_class()(**{k: w.value for k, w in self.host_widgets.items()})
        imp_settings = _impurity_settings_class()(**{k: w.value for k, w in self.imp_widgets.items()})
        return kkr.KkrRequest(
            structure=structure,
            impurities=[kkr.Impurity(r.element.value, r.site.value) for r in self.rows],
            backend=self.backend.value, task=self.task.value, host=self.host.value, kgrid=self.kgrid.value,
            contour_points=self.contour.value, screening=self.screening.value,
            code=getattr(getattr(self, "code", None), "value", None),
            resources=kkr.Resources(self.machines.value, self.mpiprocs.value, self.walltime.value),
            jukkr_task=self.jukkr_task.value, voronoi_code=codes.get("voronoi_code"), kkr_code=codes.get("kkr_code"),
            kkrimp_code=codes.get("kkrimp_code"), host_calc=self.host_calc.value, host_settings=host_settings,
            impurity_settings=imp_settings, cluster_radius=self.radius.value, jij_radius=self.jij_radius.value,
            jij_soc=self.jij_soc.value)

    # -- submit and follow -------------------------------------------------------------------------

    def submit(self):
        """Check the form; show errors next to their fields, or submit and follow. Returns the node or None."""
        self.results.children = []

        def check_and_submit():
            self.check_ready()
            return kkr.submit(self.request())

        node = checked_submit(self.form, self.progress, check_and_submit)
        if node is None:
            return None
        self.node = node
        self.progress.start(f"Submitted {node.process_label}<{node.pk}>; waiting for the daemon …")
        self.follow(node)
        return node

    def show_jukkr_results(self, node) -> None:
        """The summary table, convergence, and DOS / ΔV(r) / J_ij of a finished JuKKR work chain."""
        import plotly.graph_objects as go

        from mlkkr.aiida.kkr_results import summary
        from mlkkr.apps import kkr_plots

        data = summary(node)
        table = ipw.HTML(kkr_plots.summary_table_html(data))
        children = [ipw.HTML(f"<h3>{html.escape(node.process_label)} results</h3>"), table]

        def figure(fig, css: str):
            widget = go.FigureWidget(fig)
            widget.add_class(css)
            children.append(widget)

        if data.get("rms"):
            figure(kkr_plots.convergence_figure(data), "mlkkr-convergence-plot")
        if data["kind"] == "host":
            if data.get("dos"):
                figure(kkr_plots.dos_figure(data), "mlkkr-dos-plot")
            self.refresh_hosts(select=node.pk, promote=False)  # the monitor's thread: read only
            children.append(ipw.HTML('<span class="mlkkr-help">The host is now offered under "converged host": '
                                     "choose the next step above (embed an impurity, or J_ij).</span>"))
        elif data["kind"] == "impurity" and data.get("delta_v"):
            figure(kkr_plots.delta_v_figure(data), "mlkkr-delta-v-plot")
        elif data["kind"] == "jij" and data.get("pairs"):
            figure(kkr_plots.jij_figure(data), "mlkkr-jij-plot")
        self.results.children = children

    def follow(self, node) -> None:
        from aiidalab_widgets_base import ProcessMonitor, ProcessNodesTreeWidget

        tree = ProcessNodesTreeWidget(title="Process tree")
        tree.value = node.uuid
        log = ipw.VBox([])  # a callback that fails shows its traceback here (aiidalab-widgets-base)
        log.add_class("mlkkr-monitor-log")
        self.tree_box.children = [ipw.HTML("<b>Process tree</b> (live)"), tree, log]
        self._monitor = ProcessMonitor(callbacks=[tree.update, self._update_status],
                                       on_sealed=[self._on_sealed], timeout=1.0, log_widget=log)
        self._monitor.value = node.uuid

    def _update_status(self, uuid: str) -> None:
        from aiida import orm

        node = orm.load_node(uuid)
        state, text = kkr.describe_state(node)
        if state == "running":
            self.progress.update(message=text + kkr.jukkr_progress(node))

    def _on_sealed(self, uuid: str) -> None:
        from aiida import orm

        node = orm.load_node(uuid)
        state, text = kkr.describe_state(node)
        if state != "finished":
            self.progress.fail(text)
            return
        try:
            self.show_results(node)
        except Exception as exc:  # noqa: BLE001 - shown to the user, with the process to look at
            self.form.general.value = html.escape(f"{node.process_label}<{node.pk}> finished, but its results "
                                                  f"cannot be shown: {type(exc).__name__}: {exc}")
            self.progress.fail(f"{text}; results not shown: {exc}")
            raise
        self.progress.done(text)

    def show_results(self, node) -> None:
        import plotly.graph_objects as go

        if node.base.extras.get("mlkkr_backend", "engine") == "jukkr":
            self.show_jukkr_results(node)
            return
        task = node.base.extras.get("mlkkr_task", "exchange")
        if task == "exchange":
            rows = kkr.exchange_rows(node)
            table = ipw.HTML(kkr.tensor_table_html(rows))
            figure = go.FigureWidget(kkr.exchange_figure(rows))
            figure.add_class("mlkkr-exchange-plot")
            self.results.children = [ipw.HTML("<h3>Exchange tensors</h3>"), table, figure]
        else:
            record = kkr.potential_record(node)
            figure = go.FigureWidget(kkr.potential_figure(record))
            figure.add_class("mlkkr-potential-plot")
            self.results.children = [ipw.HTML("<h3>Impurity potential ΔV</h3>"), figure]


def _host_settings_class():
    from mlkkr.aiida.kkr import HostSettings

    return HostSettings


def _impurity_settings_class():
    from mlkkr.aiida.kkr import ImpuritySettings

    return ImpuritySettings


def _select_code(widget, full_label: str) -> None:
    """Pre-select ``full_label`` in an aiidalab-widgets-base code picker when the profile has it."""
    for label, uuid in widget.code_select_dropdown.options:
        if isinstance(label, str) and label.startswith(full_label):
            widget.value = uuid
            return
