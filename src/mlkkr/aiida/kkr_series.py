"""A series of real impurity embeddings (``kkr_imp_wc``) in one converged host, as an ML-ES dataset.

:class:`KkrImpuritySeriesWorkChain` (entry point ``mlkkr.kkr_impurity_series``) embeds one element
after another on the same host site with the same cluster radius and settings, at most
``max_concurrent`` at once, and collects the last KKRimp potential of each into one
:class:`~mlkkr.aiida.nodes.DatasetData` of schema ``mlkkr.radial`` (:func:`radial_dataset`, a
calcfunction whose inputs are the KKRimp calculations' retrieved folders: the provenance runs from
the JuKKR calculations to the dataset and to any model trained on it).

Restartable twice over: the daemon checkpoints the work chain (a killed daemon resumes it), and a
new series on the same host, radius and settings *reuses* every embedding that finished before —
the embeddings are tagged (extras ``mlkkr_series``) and kept in the series' Group — so a series
that stopped on one element is rerun for the rest only. An embedding that did not converge is
kept in the dataset with ``converged = False`` (the reader and the trainer flag and exclude it).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from aiida import orm
from aiida.engine import WorkChain, calcfunction, while_

from mlkkr.aiida.nodes import DatasetData
from mlkkr.errors import InputError

#: Group of every series' embeddings unless another is named
DEFAULT_GROUP = "mlkkr/kkr-impurity-series"


def series_key(host_uuid: str, element: str, site: int, radius: float, settings: dict[str, Any]) -> str:
    """The tag that identifies one embedding of a series (what makes it reusable)."""
    text = json.dumps({"host": host_uuid, "element": element, "site": site, "radius": round(radius, 6),
                       "settings": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@calcfunction
def radial_dataset(host_label: orm.Str, **retrieved: orm.FolderData) -> DatasetData:
    """The last KKRimp potential of each embedding as ΔV(r) records (``mlkkr.radial``), in input-name order."""
    from mlkkr import __version__
    from mlkkr.aiida.readers_kkrimp import radial_embedding
    from mlkkr.data.h5io import write_radial

    records = [radial_embedding(retrieved[name].creator, host=host_label.value) for name in sorted(retrieved)]
    params = {"source": "aiida-kkr kkr_imp_wc (KKRimp)", "host": host_label.value, "mlkkr_version": __version__,
              "embeddings": sorted(retrieved), "potential": "VM2Z difference, eV; nuclear -2Z/r excluded"}
    with tempfile.TemporaryDirectory(prefix="mlkkr-radial-") as tmp:
        return DatasetData(write_radial(Path(tmp) / DatasetData.FILENAME, records, params))


def last_kkrimp_retrieved(imp_wc: orm.WorkflowNode) -> orm.FolderData:
    """The retrieved folder of the last KKRimp calculation of a kkr_imp_wc or combine_imps_wc."""
    from mlkkr.aiida.readers_kkrimp import _sub_workflow, kkrimp_calculations

    return kkrimp_calculations(_sub_workflow(imp_wc))[-1].outputs.retrieved


def _validate(inputs: dict[str, Any], _: Any) -> str | None:
    from mlkkr.aiida.kkr import Impurity, ImpuritySettings

    elements = inputs.get("elements")
    if elements is None or not elements.get_list():
        return "elements: give at least one element symbol"
    names = elements.get_list()
    if len(set(names)) != len(names):
        return f"elements: {names} repeats an element"
    try:
        for el in names:
            _ = Impurity(str(el)).z
        ImpuritySettings(**inputs["settings"].get_dict()).check()
        pairs = inputs["pairs"].get_list() if "pairs" in inputs else []
        for pair in parse_pairs(pairs):
            missing = [el for el in pair if el not in names]
            if missing:
                return f"pairs: {'-'.join(pair)} needs {', '.join(missing)} among the elements (its single embedding)"
    except (InputError, TypeError) as exc:
        return str(exc)
    return None


def parse_pairs(pairs: Any) -> list[tuple[str, str]]:
    """``["Fe-Co", ("Mn", "Mn"), …]`` → ``[("Fe", "Co"), ("Mn", "Mn"), …]``; refused: not two element symbols,
    or a pair given twice (Fe-Co and Co-Fe are the same pair)."""
    from mlkkr.aiida.kkr import Impurity

    out, seen = [], set()
    for item in pairs or []:
        parts = item.split("-") if isinstance(item, str) else list(item)
        if len(parts) != 2 or not all(isinstance(x, str) and x.strip() for x in parts):
            raise InputError("pairs", item, allowed="two element symbols joined by '-', e.g. Fe-Co")
        a, b = (x.strip() for x in parts)
        for el in (a, b):
            _ = Impurity(el).z
        if frozenset((a, b)) in seen:
            raise InputError("pairs", f"{a}-{b}", reason="given twice")
        seen.add(frozenset((a, b)))
        out.append((a, b))
    return out


class KkrImpuritySeriesWorkChain(WorkChain):
    """Embed each of ``elements`` in the converged host ``host_remote``; one ``mlkkr.radial`` dataset out."""

    @classmethod
    def define(cls, spec: Any) -> None:  # type: ignore[override]
        super().define(spec)
        spec.input("host_remote", valid_type=orm.RemoteData, help="Remote folder of the converged host calculation.")
        spec.input("elements", valid_type=orm.List, serializer=orm.to_aiida_type, help="Impurity elements, in order.")
        spec.input("site", valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(0),
                   help="Host site that each impurity replaces.")
        spec.input("radius", valid_type=orm.Float, serializer=orm.to_aiida_type, default=lambda: orm.Float(2.5),
                   help="Cluster radius in Å (fcc Cu: 2.5 the impurity alone, 2.6 with its 12 neighbours).")
        spec.input("settings", valid_type=orm.Dict, serializer=orm.to_aiida_type, default=lambda: orm.Dict(),
                   help="ImpuritySettings fields (convergence, max_iterations, strmix, mixing_threshold).")
        spec.input("kkr", valid_type=orm.AbstractCode, help="KKRhost code.")
        spec.input("voronoi", valid_type=orm.AbstractCode, help="voronoi code.")
        spec.input("kkrimp", valid_type=orm.AbstractCode, help="KKRimp code.")
        spec.input("options", valid_type=orm.Dict, serializer=orm.to_aiida_type, default=lambda: orm.Dict(),
                   help="metadata.options of the JuKKR calculations (resources, wall time, queue).")
        spec.input("max_concurrent", valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(1),
                   help="Most embeddings running at once.")
        spec.input("group_label", valid_type=orm.Str, serializer=orm.to_aiida_type,
                   default=lambda: orm.Str(DEFAULT_GROUP), help="Group of the embeddings and the dataset.")
        spec.input("host_label", valid_type=orm.Str, serializer=orm.to_aiida_type, default=lambda: orm.Str("host"),
                   help="Host label stored in the records (e.g. fcc-Cu).")
        spec.input("pairs", valid_type=orm.List, serializer=orm.to_aiida_type, default=lambda: orm.List([]),
                   help="Impurity pairs 'A-B' (each element also among `elements`): after the single embeddings, "
                        "each pair is their two clusters joined (combine_imps_wc), B at the pair_offset-th neighbour.")
        spec.input("pair_offset", valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(1),
                   help="aiida-kkr's in-plane neighbour index of the pair's second impurity (1: nearest neighbour).")
        spec.inputs.validator = _validate
        spec.outline(cls.setup, while_(cls.left)(cls.launch, cls.inspect),
                     cls.setup_pairs, while_(cls.pairs_left)(cls.launch_pairs, cls.inspect_pairs), cls.collect)
        spec.output("dataset", valid_type=DatasetData, help="ΔV(r) of every embedding (schema mlkkr.radial).")
        spec.exit_code(420, "ERROR_EMBEDDING_FAILED", message="No usable embedding: {reasons}")

    def setup(self) -> None:
        group, _ = orm.Group.collection.get_or_create(self.inputs.group_label.value)
        host = self.inputs.host_remote.uuid
        settings = self.inputs.settings.get_dict()
        done = {}
        for node in group.nodes:
            if isinstance(node, orm.WorkflowNode) and node.is_finished_ok:
                key = node.base.extras.get("mlkkr_series", None)
                if key:
                    done[key] = node
        todo, reused = [], {}
        for el in self.inputs.elements.get_list():
            key = series_key(host, el, self.inputs.site.value, self.inputs.radius.value, settings)
            if key in done:
                reused[el] = done[key].uuid
            else:
                todo.append((el, key))
        self.ctx.todo, self.ctx.reused, self.ctx.launched, self.ctx.wave = todo, reused, 0, []
        pair_todo, pair_reused = [], {}
        for a, b in parse_pairs(self.inputs.pairs.get_list()):
            key = series_key(host, f"{a}-{b}@{self.inputs.pair_offset.value}", self.inputs.site.value,
                             self.inputs.radius.value, settings)
            if key in done:
                pair_reused[f"{a}-{b}"] = done[key].uuid
            else:
                pair_todo.append((a, b, key))
        self.ctx.pair_todo, self.ctx.pair_reused, self.ctx.pair_launched = pair_todo, pair_reused, 0
        self.ctx.pair_skipped = []
        self.report(f"{len(todo)} embeddings to run, {len(reused)} reused from group {group.label!r}"
                    + (f"; pairs: {len(pair_todo)} to run, {len(pair_reused)} reused" if pair_todo or pair_reused
                       else ""))

    def left(self) -> bool:
        return self.ctx.launched < len(self.ctx.todo)

    def launch(self) -> None:
        from mlkkr.aiida.kkr import Impurity, ImpuritySettings, impurity_builder

        width = max(1, self.inputs.max_concurrent.value)
        wave = self.ctx.todo[self.ctx.launched:self.ctx.launched + width]
        for el, key in wave:
            builder = impurity_builder(self.inputs.host_remote,
                                       Impurity(el, self.inputs.site.value, self.inputs.radius.value),
                                       self.inputs.kkr, self.inputs.voronoi, self.inputs.kkrimp,
                                       settings=ImpuritySettings(**self.inputs.settings.get_dict()),
                                       options=self.inputs.options.get_dict() or None)
            builder.metadata.call_link_label = f"imp_{el}"
            node = self.submit(builder)
            node.base.extras.set_many({"mlkkr_series": key, "mlkkr_element": el})
            orm.load_group(self.inputs.group_label.value).add_nodes([node])
            self.to_context(**{f"imp_{el}": node})
            self.report(f"embedding {el}: {node.process_label}<{node.pk}>")
        self.ctx.launched += len(wave)
        self.ctx.wave = [el for el, _ in wave]

    def inspect(self) -> None:
        for el in self.ctx.wave:
            node = self.ctx[f"imp_{el}"]
            state = "ok" if node.is_finished_ok else f"failed (exit status {node.exit_status})"
            self.report(f"{el}: {node.process_label}<{node.pk}> {state}")

    def _singles(self) -> dict[str, orm.WorkflowNode]:
        nodes: dict[str, orm.WorkflowNode] = {el: orm.load_node(u) for el, u in self.ctx.reused.items()}
        for el, _ in self.ctx.todo:
            nodes[el] = self.ctx[f"imp_{el}"]
        return nodes

    def setup_pairs(self) -> None:
        """Keep the pairs whose two single embeddings finished; the others are reported and skipped."""
        singles = self._singles()
        runnable = []
        # .get: a series checkpointed by an mlkkr without pairs resumes here with none
        self.ctx.pair_skipped, self.ctx.pair_launched = self.ctx.get("pair_skipped", []), 0
        self.ctx.pair_reused = self.ctx.get("pair_reused", {})
        for a, b, key in self.ctx.get("pair_todo", []):
            bad = [el for el in (a, b) if not singles[el].is_finished_ok]
            if bad:
                self.ctx.pair_skipped.append(f"{a}-{b}: the embedding of {', '.join(bad)} failed")
            else:
                runnable.append((a, b, key))
        self.ctx.pair_todo = runnable

    def pairs_left(self) -> bool:
        return self.ctx.pair_launched < len(self.ctx.pair_todo)

    def launch_pairs(self) -> Any:
        from mlkkr.aiida.kkr import ImpuritySettings, pair_builder

        singles = self._singles()
        width = max(1, self.inputs.max_concurrent.value)
        wave = self.ctx.pair_todo[self.ctx.pair_launched:self.ctx.pair_launched + width]
        self.ctx.pair_wave = []
        for a, b, key in wave:
            name = f"pair_{a}_{b}"
            try:
                builder = pair_builder(singles[a], singles[b], self.inputs.kkr, self.inputs.kkrimp,
                                       offset=self.inputs.pair_offset.value,
                                       settings=ImpuritySettings(**self.inputs.settings.get_dict()),
                                       options=self.inputs.options.get_dict() or None,
                                       label=f"{a}-{b} in {self.inputs.host_label.value}")
            except InputError as exc:  # e.g. a single embedding that did not converge
                self.ctx.pair_skipped.append(f"{a}-{b}: {exc}")
                continue
            builder.metadata.call_link_label = name
            node = self.submit(builder)
            node.base.extras.set_many({"mlkkr_series": key, "mlkkr_pair": [a, b]})
            orm.load_group(self.inputs.group_label.value).add_nodes([node])
            self.to_context(**{name: node})
            self.ctx.pair_wave.append(name)
            self.report(f"pair {a}-{b}: {node.process_label}<{node.pk}>")
        self.ctx.pair_launched += len(wave)

    def inspect_pairs(self) -> None:
        for name in self.ctx.pair_wave:
            node = self.ctx[name]
            state = "ok" if node.is_finished_ok else f"failed (exit status {node.exit_status})"
            self.report(f"{name}: {node.process_label}<{node.pk}> {state}")

    @staticmethod
    def _collect_one(key: str, name: str, node: Any, reused: bool, link: str, retrieved: dict[str, Any],
                     skipped: list[str]) -> dict[str, Any]:
        """One embedding (a single or a pair) of the summary: its last KKRimp folder goes to ``retrieved`` under
        ``link``, or the reason it cannot to ``skipped``."""
        entry = {key: name, "workflow": node.uuid, "pk": node.pk, "reused": reused, "finished_ok": node.is_finished_ok}
        if not node.is_finished_ok:
            skipped.append(f"{name}: {node.process_label}<{node.pk}> exit status {node.exit_status}")
            return entry
        try:
            folder = last_kkrimp_retrieved(node)
            retrieved[link] = folder
            conv = folder.creator.outputs.output_parameters.get_dict().get("convergence_group", {})
            entry.update(converged=bool(conv.get("calculation_converged")), rms=conv.get("rms"))
        except (InputError, AttributeError, KeyError) as exc:
            skipped.append(f"{name}: {exc}")
        return entry

    def collect(self) -> Any:
        nodes = self._singles()
        retrieved, summary, skipped = {}, [], []
        for k, el in enumerate(self.inputs.elements.get_list()):
            summary.append(self._collect_one("element", el, nodes[el], el in self.ctx.reused, f"e{k:03d}_{el}",
                                             retrieved, skipped))
        pairs = {p: orm.load_node(u) for p, u in self.ctx.pair_reused.items()}
        pairs.update({f"{a}-{b}": self.ctx[f"pair_{a}_{b}"] for a, b, _ in self.ctx.pair_todo
                      if f"pair_{a}_{b}" in self.ctx})
        skipped += self.ctx.pair_skipped
        for k, (pair, node) in enumerate(pairs.items()):
            summary.append(self._collect_one("pair", pair, node, pair in self.ctx.pair_reused,
                                             f"p{k:03d}_{pair.replace('-', '_')}", retrieved, skipped))
        if not retrieved:
            return self.exit_codes.ERROR_EMBEDDING_FAILED.format(reasons="; ".join(skipped))
        dataset = radial_dataset(host_label=self.inputs.host_label, **retrieved,
                                 metadata={"call_link_label": "collect"})
        orm.load_group(self.inputs.group_label.value).add_nodes([dataset])
        self.out("dataset", dataset)
        # a summary, not data: kept as extras (a work chain may not create data nodes); a list, in the
        # order of the elements (a JSON object's key order is not kept by PostgreSQL)
        self.node.base.extras.set("mlkkr_series_summary", {"elements": summary, "skipped": skipped,
                                                          "group": self.inputs.group_label.value})
        self.report(f"dataset {dataset.pk}: {dataset.n_records} embeddings; skipped: {skipped or 'none'}")
        return None
