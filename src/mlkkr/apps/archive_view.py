"""The Data archive app (widgets): the shared store's catalog, import, and publishing a Group.

Model and checks: :mod:`mlkkr.apps.archive`.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as ipw

from mlkkr.apps import archive
from mlkkr.apps.loading import SLOW_IMPORTS, LazyApp
from mlkkr.apps.widgets import Field, Form, Progress, header, html_table, in_background
from mlkkr.errors import InputError

_WIDE = {"description_width": "140px"}
_FULL = {"width": "640px"}


class ArchiveApp(LazyApp):
    """Browse, import and publish FAIR AiiDA archives of the shared store."""

    slow_imports = (*SLOW_IMPORTS, "mlkkr.archive.client", "mlkkr.archive.aiida_io")

    def __init__(self, background: bool = True) -> None:
        self._init_loading()
        self.entries: list[Any] = []
        # --- catalog
        self.catalog_html = ipw.HTML("")
        self.catalog_html.add_class("mlkkr-catalog")
        refresh = ipw.Button(description="Refresh", icon="refresh")
        refresh.on_click(lambda _: self.refresh())
        self.item = ipw.Dropdown(options=[("(loading …)", None)], description="Item", style=_WIDE, layout=_FULL)
        self.item.add_class("mlkkr-catalog-item")
        self.item.observe(lambda _: self.show_details(), "value")
        self.details = ipw.HTML("")
        self.import_button = ipw.Button(description="Import into my profile", icon="download", button_style="primary",
                                        layout={"width": "240px"})
        self.import_button.add_class("mlkkr-import")
        self.import_button.on_click(lambda _: self.import_selected())
        self.import_progress = Progress()
        self.import_form = Form()
        self.item_field = self.import_form.add(Field("item", self.item))
        # --- publish
        self.form = Form()
        self.group = ipw.Dropdown(options=[("(loading …)", None)], description="Group", style=_WIDE, layout=_FULL)
        self.name = ipw.Text(description="Name", placeholder="from the group's label", style=_WIDE, layout=_FULL)
        self.title = ipw.Text(description="Title", style=_WIDE, layout=_FULL)
        self.licence = ipw.Dropdown(options=archive.licences(), value="CC-BY-4.0", description="Licence", style=_WIDE)
        self.authors = ipw.Textarea(description="Authors", placeholder="Name <ORCID iD>; one per line",
                                    style=_WIDE, layout=_FULL)
        self.description = ipw.Textarea(description="Description", style=_WIDE, layout=_FULL)
        self.keywords = ipw.Text(description="Keywords", placeholder="comma-separated", style=_WIDE, layout=_FULL)
        fields = [Field("group", self.group, help="Everything in the group is exported with its provenance."),
                  Field("name", self.name, help="1-64 characters: a-z, 0-9, '.', '_', '-'."),
                  Field("title", self.title), Field("licence", self.licence),
                  Field("authors", self.authors, help="At least one; an ORCID iD in <…> is checked."),
                  Field("description", self.description), Field("keywords", self.keywords)]
        for f in fields:
            self.form.add(f)
        self.publish_button = ipw.Button(description="Publish", icon="upload", button_style="primary")
        self.publish_button.add_class("mlkkr-publish")
        self.publish_button.on_click(lambda _: self.publish())
        self.publish_progress = Progress()
        children = [
            header("Data archive", "The shared FAIR store: AiiDA archives with RO-Crate metadata, published "
                                   "versions immutable."),
            self.loading,
            ipw.HTML("<h3>Catalog</h3>"), refresh, self.catalog_html,
            ipw.HTML("<h3>Import</h3>"), self.item_field, self.details, self.import_button,
            self.import_form.general, self.import_progress,
            ipw.HTML("<h3>Publish a Group</h3>"), *fields, self.publish_button, self.form.general,
            self.publish_progress,
        ]
        super().__init__(children, background=background)

    def _load(self) -> None:
        self.refresh()
        self.refresh_groups()

    # -- catalog and import --------------------------------------------------------------------------

    def refresh(self) -> None:
        try:
            self.entries = archive.catalog()
        except Exception as exc:  # noqa: BLE001 - shown in place of the catalog
            self.catalog_html.value = f'<span class="mlkkr-field-error">The store is not reachable: ' \
                                      f"{html.escape(str(exc))}</span>"
            return
        if not self.entries:
            self.catalog_html.value = '<span class="mlkkr-help">Nothing published yet.</span>'
        else:
            self.catalog_html.value = html_table(archive.CATALOG_HEADERS, archive.entry_rows(self.entries))
        self.item.options = [("(choose an item)", None), *[(f"{e.name} v{e.version} — {e.title}", (e.name, e.version))
                                                            for e in self.entries]]

    def show_details(self) -> None:
        if self.item.value is None:
            self.details.value = ""
            return
        info = archive.entry_details(*self.item.value)
        e = info["entry"]
        authors = "; ".join(a.get("name", "") + (f" ({a['orcid']})" if a.get("orcid") else "") for a in e.authors)
        self.details.value = (
            f'<div class="mlkkr-details"><b>{html.escape(e.title)}</b> — {html.escape(e.name)} v{e.version}<br>'
            f"{html.escape(e.description or '')}<br>authors: {html.escape(authors)}; licence {html.escape(e.licence)};"
            f" keywords: {html.escape(', '.join(e.keywords))}<br>{e.node_count} nodes, "
            f"aiida {html.escape(e.aiida_version)}, "
            f"sha256 <code>{e.sha256[:16]}…</code></div>")

    def import_selected(self) -> None:
        self.import_form.clear()
        if self.item.value is None:
            self.import_form.show(InputError("item", None, reason="choose an item of the catalog"))
            return
        name, version = self.item.value
        self.import_progress.start(f"Downloading, checking and importing {name} v{version} …")

        def work() -> None:
            report = archive.import_entry(name, version)
            self.import_progress.done(f"Imported {name} v{version}: {report['new_nodes']} new nodes "
                                      f"(group {report.get('import_group') or '-'}).")
            self.refresh_groups()

        in_background(work, self.import_progress)

    # -- publish ---------------------------------------------------------------------------------------

    def refresh_groups(self) -> None:
        groups = archive.groups()
        self.group.options = [("(choose a group)", None), *[(f"{label} ({n} nodes)", label) for label, n in groups]]

    def request(self) -> archive.PublishForm:
        return archive.PublishForm(group=self.group.value, name=self.name.value, title=self.title.value,
                                   licence=self.licence.value, authors=self.authors.value,
                                   description=self.description.value, keywords=self.keywords.value)

    def publish(self) -> None:
        self.form.clear()
        form = self.request()
        try:
            self.check_ready()
            archive.check_publish(form)
        except InputError as exc:
            self.form.show(exc)
            self.publish_progress.fail("Not published: correct the field marked in red.")
            return
        except RuntimeError as exc:
            self.publish_progress.fail(f"Not published: {exc}")
            return
        self.publish_progress.start(f"Exporting group {form.group} and uploading to the store …")

        def work() -> None:
            try:
                entry = archive.publish(form)
            except InputError as exc:
                self.form.show(exc)
                self.publish_progress.fail(f"Not published: {exc}")
                return
            self.publish_progress.done(f"Published {entry.name} v{entry.version} ({entry.node_count} nodes).")
            self.refresh()

        in_background(work, self.publish_progress)
