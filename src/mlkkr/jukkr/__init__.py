"""JuKKR — voronoi, KKRhost (``kkr.x``) and KKRimp (``kkrflex.exe``) — as a dependency of the platform.

The Jülich KKR codes (MIT licence, https://jukkr.fz-juelich.de, public mirror JuDFTteam/JuKKR) are
built from one pinned commit (:mod:`mlkkr.jukkr.build`), checked against JuKKR's own regression cases
(:mod:`mlkkr.jukkr.check`) and installed into a prefix that the hub and every user can read; the AiiDA
codes of every profile point there (:mod:`mlkkr.aiida.jukkr_codes`). This package knows nothing of AiiDA.

The source comes from a local copy (``--source`` or ``$MLKKR_JUKKR_SOURCE``: the tarball, whose SHA-256
must be :data:`SOURCE_SHA256`) or from the public mirror's archive of :data:`COMMIT`. Either way the
files that are built are checked file by file: :data:`SOURCE_TREE_SHA256` is the SHA-256 of their sorted
``sha256  path`` list (see :func:`mlkkr.jukkr.source.tree_sha256`); every one of them is byte-identical
to the file at that commit (git blob ids compared once, when the pin was chosen).
"""

from __future__ import annotations

#: the pinned JuKKR commit (2024-05-03, JuDFTteam/JuKKR)
COMMIT = "2a47b06b4bf98fd8046fb7b2bfa0fe677e61359c"
SHORT = COMMIT[:8]
MIRROR_ARCHIVE = f"https://github.com/JuDFTteam/JuKKR/archive/{COMMIT}.tar.gz"

SOURCE_TARBALL = f"jukkr-{SHORT}-src.tar.gz"
SOURCE_SHA256 = "01e5e914adda0fec5e92f718d66060e681374bece269ea20e8bd5f842fbeb1bc"
#: what the build reads: files under these paths of the source tree (PDFs of the docs left out)
SOURCE_PATHS = ("CMakeLists.txt", "cmake", "source/KKRhost", "source/KKRimp", "source/voronoi", "source/common",
                "source/external", "source/libs", "ElementDataBase", "LICENSE.md", "CITATION.cff", "README.md",
                "install.py")
SOURCE_FILES = 707
SOURCE_TREE_SHA256 = "5b99c962811ccb0bd19307bd2479c6cbc90d6bb03ae020d9613576c0115b642f"

TESTS_TARBALL = f"jukkr-{SHORT}-tests.tar.gz"
TESTS_SHA256 = "1daa7f4352439b1f794d1db93786d680de4fd52fe6b8ac361f8ef88ac441c78f"
#: JuKKR's own KKRhost regression cases that `mlkkr jukkr check` runs (inputs and reference outputs)
TEST_CASES = {
    "test_01": "tests/KKRhost/test_inputs/test_01_fcc_Au_4_atom_bulk_lmax2_noSOC",
    "test_02": "tests/KKRhost/test_inputs/test_02_bcc_Fe_1_2_1_atom_slab_lmax2_noSOC_mag",
}
TESTS_FILES = 20
TESTS_TREE_SHA256 = "06d9a22327c1cb0668a756ed67c4f5373b27ce918141cbf86b520c453fac7e18"

#: code name -> (executable, the CMake switch that builds it, aiida-kkr's CalcJob entry point)
CODES = {
    "voronoi": ("voronoi.exe", "COMPILE_VORONOI", "kkr.voro"),
    "kkrhost": ("kkr.x", "COMPILE_KKRHOST", "kkr.kkr"),
    "kkrimp": ("kkrflex.exe", "COMPILE_KKRIMP", "kkr.kkrimp"),
}
