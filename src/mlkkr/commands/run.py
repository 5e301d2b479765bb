"""``mlkkr run``: submit mlkkr work chains to AiiDA (datasets, training) and follow them.

Examples::

    mlkkr run dataset exchange --n 1000 --batch 100 --computer localhost --json
    mlkkr run dataset potential --n 200 --batch 20 --computer cluster --walltime 3600 --param kgrid=16
    mlkkr run dataset potential --backend jukkr --host 1234 --elements 3d,4d --max-concurrent 2
    mlkkr run training --group mlkkr/dataset/exchange/42 --computer gpu --param epochs=100 --json
    mlkkr run show 1234 --json

Every input is checked before anything is submitted (bad input: exit status 2, nothing stored).
``--json`` prints ``{"pk", "uuid", "process_label", "state", ...}``.
"""

from __future__ import annotations

import json
from typing import Any

import click

from mlkkr.commands._common import emit, handle_errors, json_option
from mlkkr.errors import InputError


def parse_params(values: tuple[str, ...], field: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; VALUE as JSON when it parses (numbers, true/false), else a string."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(field, item, allowed="KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip().replace("-", "_")] = value
    return out


def _launch_options(f):
    f = click.option("--computer", required=True, help="AiiDA computer to run the jobs on.")(f)
    f = click.option("--code", default=None,
                     help="The mlkkr code (label@computer) [default: mlkkr@COMPUTER, made for local computers].")(f)
    f = click.option("--walltime", type=int, default=None, help="Wall-clock limit of each job (s).")(f)
    f = click.option("--queue", default=None, help="Scheduler queue/partition.")(f)
    f = click.option("--account", default=None, help="Scheduler account.")(f)
    f = click.option("--wait", is_flag=True, help="Return only when the work chain has ended.")(f)
    f = click.option("--profile", default=None, help="AiiDA profile [default: the default profile].")(f)
    return json_option(f)


def _human(s: dict[str, Any]) -> str:
    lines = [f"{s['process_label']}<{s['pk']}> {s['state']}" + (
        f" [{s['exit_status']}]" if s.get("exit_status") is not None else "")]
    if s.get("exit_message"):
        lines.append(f"  {s['exit_message']}")
    if s.get("group"):
        lines.append(f"  group: {s['group']}")
    for key, pk in sorted(s.get("outputs", {}).items()):
        lines.append(f"  {key}: {pk}")
    if s["state"] not in ("finished", "excepted", "killed"):
        lines.append(f"  follow it: verdi process status {s['pk']}")
    return "\n".join(lines)


@click.group("run")
def run() -> None:
    """Run datasets and trainings as AiiDA work chains on a configured computer."""


@run.group("dataset")
def dataset() -> None:
    """A dataset in parallel batches (one engine job each), collected into a Group."""


def _dataset_command(kind: str):
    what = "Exchange pairs" if kind == "exchange" else "Impurity potentials"
    jukkr_help = ("" if kind == "exchange" else
                  " With --backend jukkr: real KKRimp embeddings of --elements in the converged --host "
                  "(kkr_imp_wc each), collected as one ΔV(r) dataset (schema mlkkr.radial); rerunning the "
                  "same series reuses the embeddings that finished.")

    @dataset.command(kind, help=f"{what} (`mlkkr data {kind}` in batches) as an AiiDA work chain.{jukkr_help}")
    @click.option("--backend", type=click.Choice(["engine", "jukkr"]), default="engine", show_default=True,
                  help="engine: the model Green-function engine in batch jobs; jukkr: real KKR (potential only).")
    @click.option("--n", "n", type=int, default=None, help="Number of records (engine; required there).")
    @click.option("--batch", type=int, default=100, show_default=True, help="Records per job (engine).")
    @click.option("--seed", type=int, default=0, show_default=True, help="Seed of the dataset (engine).")
    @click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                  help=f"Option of `mlkkr data {kind}` (e.g. kgrid=12, host=metal); repeatable (engine).")
    @click.option("--host", default=None, help="Converged host (kkr_scf_wc PK/UUID; jukkr).")
    @click.option("--elements", default=None, help="Impurities: symbols, 3d, 4d, comma-separated (jukkr).")
    @click.option("--radius", type=float, default=2.5, show_default=True,
                  help="Cluster radius in Å (jukkr; fcc Cu: 2.5 the impurity alone, 2.6 with its 12 neighbours).")
    @click.option("--site", type=int, default=0, show_default=True, help="Host site replaced (jukkr).")
    @click.option("--pairs", default=None,
                  help="Impurity pairs A-B, comma-separated (jukkr): after the single embeddings, each pair's two "
                       "clusters joined (combine_imps_wc); their elements are added to --elements.")
    @click.option("--pair-offset", type=int, default=1, show_default=True,
                  help="In-plane neighbour of the first impurity that the second takes (jukkr; 1: nearest).")
    @click.option("--group", default=None, help="Group label [engine: mlkkr/dataset/KIND/PK; jukkr: "
                                                "mlkkr/kkr-impurity-series].")
    @click.option("--max-concurrent", type=int, default=None,
                  help="Most jobs at once [engine: 0 = all; jukkr: 1].")
    @click.option("--computer", default=None, help="AiiDA computer of the engine jobs (engine; required there).")
    @click.option("--code", default=None,
                  help="The mlkkr code (label@computer) [default: mlkkr@COMPUTER, made for local computers].")
    @click.option("--walltime", type=int, default=None, help="Wall-clock limit of each job (s).")
    @click.option("--queue", default=None, help="Scheduler queue/partition.")
    @click.option("--account", default=None, help="Scheduler account.")
    @click.option("--wait", is_flag=True, help="Return only when the work chain has ended.")
    @click.option("--profile", default=None, help="AiiDA profile [default: the default profile].")
    @json_option
    @handle_errors
    def command(backend: str, n: int | None, batch: int, seed: int, params: tuple[str, ...], host: str | None,
                elements: str | None, radius: float, site: int, pairs: str | None, pair_offset: int,
                group: str | None, max_concurrent: int | None,
                computer: str | None, code: str | None, walltime: int | None, queue: str | None,
                account: str | None, wait: bool, profile: str | None, as_json: bool) -> None:
        from mlkkr.aiida.launch import dataset_builder, describe, job_options, launch, load_user_profile

        if backend == "jukkr":
            if kind != "potential":
                raise InputError("--backend", backend, allowed=["engine"],
                                 reason="real J_ij datasets come from `mlkkr run kkr jij`; a J_ij series is not "
                                        "offered yet")
            if host is None or (elements is None and pairs is None):
                raise InputError("--host" if host is None else "--elements", None,
                                 reason="--backend jukkr needs --host (a converged kkr_scf_wc) and --elements "
                                        "(or --pairs)")
            from mlkkr.aiida.kkr import options_dict
            from mlkkr.aiida.kkr_launch import parse_elements, submit_series
            from mlkkr.aiida.kkr_series import parse_pairs

            pair_list = parse_pairs([p for p in (pairs or "").split(",") if p.strip()])
            names = parse_elements(elements) if elements else []
            names += [el for el in dict.fromkeys(x for p in pair_list for x in p) if el not in names]
            load_user_profile(profile)
            opts = options_dict(max_wallclock_seconds=walltime or 3600, queue_name=queue or "")
            node = submit_series(host, names, radius=radius, site=site, options=opts,
                                 max_concurrent=1 if max_concurrent is None else max_concurrent, group=group,
                                 pairs=[f"{a}-{b}" for a, b in pair_list], pair_offset=pair_offset, wait=wait)
            emit(describe(node), as_json, _human)
            return
        if n is None or n < 1:  # before loading anything
            raise InputError("--n", n, allowed="an integer >= 1 (number of records)")
        if computer is None:
            raise InputError("--computer", None, reason="the engine backend needs --computer")
        load_user_profile(profile)
        builder = dataset_builder(kind, n, batch, computer, code=code, seed=seed,
                                  parameters=parse_params(params, "--param"),
                                  options=job_options(walltime, queue, account),
                                  max_concurrent=0 if max_concurrent is None else max_concurrent, group=group)
        emit(describe(launch(builder, wait=wait)), as_json, _human)

    return command


dataset_exchange = _dataset_command("exchange")
dataset_potential = _dataset_command("potential")


@run.command("training")
@click.option("--group", default=None, help="Train on the datasets of this group (e.g. a dataset run's group).")
@click.option("--dataset", "datasets", type=int, multiple=True, help="Train on this dataset node (PK); repeatable.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Option of `mlkkr train KIND` (e.g. epochs=50, device=cuda); repeatable.")
@click.option("--eval-param", "eval_params", multiple=True, metavar="KEY=VALUE",
              help="Option of `mlkkr evaluate` (e.g. no_plots=true); repeatable.")
@_launch_options
@handle_errors
def training(group: str | None, datasets: tuple[int, ...], params: tuple[str, ...], eval_params: tuple[str, ...],
             computer: str, code: str | None, walltime: int | None, queue: str | None, account: str | None,
             wait: bool, profile: str | None, as_json: bool) -> None:
    """Train a model on datasets, then evaluate it on the held-out test split (AiiDA work chain)."""
    from aiida import orm

    from mlkkr.aiida.launch import describe, group_datasets, job_options, launch, load_user_profile, training_builder
    from mlkkr.aiida.nodes import DatasetData

    if not group and not datasets:
        raise InputError("--group/--dataset", None, reason="give the training data: --group LABEL or --dataset PK")
    load_user_profile(profile)
    chosen: dict[str, Any] = group_datasets(group) if group else {}
    for pk in datasets:
        try:
            node = orm.load_node(pk)
        except Exception:  # noqa: BLE001 - NotExistent or MultipleObjects: both mean no such dataset
            node = None
        if not isinstance(node, DatasetData):
            raise InputError("--dataset", pk, reason="not an mlkkr dataset node")
        chosen[f"d{node.pk}"] = node
    builder = training_builder(chosen, computer, code=code, train_parameters=parse_params(params, "--param"),
                               evaluate_parameters=parse_params(eval_params, "--eval-param"),
                               options=job_options(walltime, queue, account))
    emit(describe(launch(builder, wait=wait)), as_json, _human)


@run.command("show")
@click.argument("pk", type=int)
@click.option("--profile", default=None, help="AiiDA profile [default: the default profile].")
@json_option
@handle_errors
def show(pk: int, profile: str | None, as_json: bool) -> None:
    """State and outputs of a process (e.g. one started by `mlkkr run`)."""
    from aiida import orm

    from mlkkr.aiida.launch import describe, load_user_profile

    load_user_profile(profile)
    try:
        node = orm.load_node(pk)
    except Exception:  # noqa: BLE001
        raise InputError("PK", pk, reason="no such node") from None
    if not isinstance(node, orm.ProcessNode):
        raise InputError("PK", pk, reason=f"node {pk} is a {type(node).__name__}, not a process")
    emit(describe(node), as_json, _human)


# ------------------------------------------------------------------------------------ real KKR (JuKKR)

def _kkr_options(f):
    f = click.option("--walltime", type=int, default=3600, show_default=True,
                     help="Wall-clock limit of each job (s).")(f)
    f = click.option("--queue", default=None, help="Scheduler queue/partition (HPC codes).")(f)
    f = click.option("--wait", is_flag=True, help="Return only when the work chain has ended.")(f)
    f = click.option("--profile", default=None, help="AiiDA profile [default: the default profile].")(f)
    return json_option(f)


def _kkr_human(s: dict[str, Any]) -> str:
    return _human(s)


@run.group("kkr")
def kkr_group() -> None:
    """Real KKR with JuKKR through aiida-kkr: host SCF, impurity embedding, J_ij (on voronoi/kkrhost/kkrimp@localhost
    unless other codes are named)."""


def _settings(cls, **values):
    return cls(**{k: v for k, v in values.items() if v is not None})


@kkr_group.command("scf")
@click.argument("structure")
@click.option("--lmax", type=int, default=None, help="Angular-momentum cut-off [default 2].")
@click.option("--nspin", type=int, default=None, help="1 or 2 [default 2: magnetic impurities need it].")
@click.option("--kmesh", type=int, default=None, help="Fine k-mesh per direction [default 20].")
@click.option("--convergence", type=float, default=None, help="rms criterion of the SCF [default 1e-6].")
@click.option("--max-iterations", type=int, default=None, help="KKRhost iterations in all [default 250].")
@click.option("--mag-init", is_flag=True, default=None, help="Start with a magnetic moment (e.g. bcc Fe).")
@click.option("--dos", is_flag=True, default=None, help="Compute the DOS of the converged host.")
@click.option("--voronoi-code", default=None, help="voronoi code [default voronoi@localhost].")
@click.option("--kkr-code", default=None, help="KKRhost code [default kkrhost@localhost].")
@_kkr_options
@handle_errors
def kkr_scf(structure, lmax, nspin, kmesh, convergence, max_iterations, mag_init, dos, voronoi_code, kkr_code,
            walltime, queue, wait, profile, as_json):
    """Host SCF (kkr_scf_wc) of STRUCTURE: fcc-Cu, bcc-Fe, a structure file or a StructureData PK."""
    from mlkkr.aiida.kkr import HostSettings, options_dict
    from mlkkr.aiida.kkr_launch import submit_host
    from mlkkr.aiida.launch import describe, load_user_profile

    settings = _settings(HostSettings, lmax=lmax, nspin=nspin, kmesh=kmesh, convergence=convergence,
                         max_iterations=max_iterations, mag_init=mag_init, dos=dos)
    settings.check()
    load_user_profile(profile)
    node = submit_host(structure, settings, voronoi=voronoi_code, kkr_code=kkr_code,
                       options=options_dict(max_wallclock_seconds=walltime, queue_name=queue or ""), wait=wait)
    emit(describe(node), as_json, _kkr_human)


@kkr_group.command("impurity")
@click.argument("host")
@click.option("--element", required=True, help="The impurity's element (e.g. Fe).")
@click.option("--site", type=int, default=0, show_default=True, help="Host site it replaces.")
@click.option("--radius", type=float, default=None, help="Cluster radius in Å [default 2.5: the impurity alone].")
@click.option("--convergence", type=float, default=None, help="rms criterion [default 1e-6].")
@click.option("--max-iterations", type=int, default=None, help="KKRimp iterations in all [default 150].")
@click.option("--mag-init/--no-mag-init", default=None, help="Start magnetic [default: for V…Ni, Gd].")
@click.option("--voronoi-code", default=None)
@click.option("--kkr-code", default=None)
@click.option("--kkrimp-code", default=None)
@_kkr_options
@handle_errors
def kkr_impurity(host, element, site, radius, convergence, max_iterations, mag_init, voronoi_code, kkr_code,
                 kkrimp_code, walltime, queue, wait, profile, as_json):
    """Embed an impurity (kkr_imp_wc) in the converged HOST (a kkr_scf_wc PK or UUID)."""
    from mlkkr.aiida.kkr import Impurity, ImpuritySettings, options_dict
    from mlkkr.aiida.kkr_launch import submit_impurity
    from mlkkr.aiida.launch import describe, load_user_profile

    settings = _settings(ImpuritySettings, convergence=convergence, max_iterations=max_iterations, mag_init=mag_init)
    impurity = Impurity(element, site, radius if radius is not None else Impurity.radius)
    load_user_profile(profile)
    node = submit_impurity(host, impurity, settings, voronoi=voronoi_code, kkr_code=kkr_code, kkrimp=kkrimp_code,
                           options=options_dict(max_wallclock_seconds=walltime, queue_name=queue or ""), wait=wait)
    emit(describe(node), as_json, _kkr_human)


@kkr_group.command("jij")
@click.argument("host")
@click.option("--radius", type=float, default=5.0, show_default=True, help="Largest pair distance (Å).")
@click.option("--sites", default=None, help="Site indices of the cell whose pairs are computed, e.g. 0 or 0,1 "
              "(the magnetic ones) [default: every site].")
@click.option("--soc/--no-soc", default=False, show_default=True,
              help="With spin-orbit coupling (KKRhost's Chebyshev solver, three magnetisation directions): "
              "the full tensor J, D and S instead of the isotropic J.")
@click.option("--kkr-code", default=None)
@_kkr_options
@handle_errors
def kkr_jij(host, radius, sites, soc, kkr_code, walltime, queue, wait, profile, as_json):
    """Exchange interactions J_ij (kkr_jij_wc) of the converged magnetic HOST."""
    from mlkkr.aiida.kkr import options_dict
    from mlkkr.aiida.kkr_launch import submit_jij
    from mlkkr.aiida.launch import describe, load_user_profile

    chosen = None
    if sites is not None:
        try:
            chosen = [int(x) for x in sites.split(",") if x.strip()]
        except ValueError:
            chosen = []
        if not chosen:
            raise InputError("sites", sites, allowed="comma-separated site indices, e.g. 0,1")
    load_user_profile(profile)
    node = submit_jij(host, radius, sites_i=chosen, sites_j=chosen, soc=soc, kkr_code=kkr_code,
                      options=options_dict(max_wallclock_seconds=walltime, queue_name=queue or ""), wait=wait)
    emit(describe(node), as_json, _kkr_human)


@kkr_group.command("hosts")
@click.option("--profile", default=None, help="AiiDA profile [default: the default profile].")
@json_option
@handle_errors
def kkr_hosts(profile, as_json):
    """The converged hosts offered for reuse (Group mlkkr/kkr-hosts)."""
    from mlkkr.aiida.kkr_results import converged_hosts
    from mlkkr.aiida.launch import load_user_profile

    load_user_profile(profile)
    hosts = converged_hosts()
    emit(hosts, as_json, lambda hs: "\n".join(f"{h['pk']:>6}  {h['formula']:<8} E_F {h['fermi_energy_ry']} Ry  "
                                              f"NSPIN {h['nspin']}  {h['label']}" for h in hs)
         or "no converged host yet")


@kkr_group.command("results")
@click.argument("pk")
@click.option("--profile", default=None, help="AiiDA profile [default: the default profile].")
@json_option
@handle_errors
def kkr_results(pk, profile, as_json):
    """Results of a kkr_scf_wc, kkr_imp_wc or kkr_jij_wc: convergence, E_F, moments, ΔV(r), J_ij."""
    from mlkkr.aiida.kkr_results import summary
    from mlkkr.aiida.launch import load_user_profile

    load_user_profile(profile)
    try:
        data = summary(int(pk) if str(pk).isdigit() else pk)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - NotExistent and the like: a bad identifier
        raise InputError("PK", pk, reason=f"no such process ({exc})") from None

    def human(d):
        lines = [f"{d['kind']} <{d['pk']}> {d.get('label', '')}: {d['state']}, converged {d.get('converged')}"]
        if d.get("rms"):
            lines.append(f"  rms: {len(d['rms'])} iterations, {d['rms'][0]:.3g} → {d['rms'][-1]:.3g}")
        for key in ("fermi_energy_ry", "total_energy_ry", "total_spin_moment", "spin_moment_per_atom"):
            if d.get(key) is not None:
                lines.append(f"  {key}: {d[key]}")
        for shell in d.get("shells", []):
            lines.append(f"  J({shell['distance_angstrom']:.3f} Å, ×{shell['n']}) = {shell['J_meV']:.3f} meV")
        return "\n".join(lines)

    emit(data, as_json, human)
