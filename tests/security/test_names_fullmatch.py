"""Names are matched whole: ``re.match`` with ``^…$`` accepts a name with a final newline (``$`` matches
before it), which then became a catalog row and a 500 (issue 15). Every validator refuses it."""

from __future__ import annotations

import pytest

from mlkkr.archive.names import validate_name
from mlkkr.errors import InputError


@pytest.mark.parametrize("value", ["fe-jij\n", "fe-jij\r\n", "a\n"])
def test_archive_names_with_a_final_newline_are_refused(value):
    with pytest.raises(InputError, match="name"):
        validate_name(value)


def test_profile_name_and_march_with_a_final_newline_are_refused():
    from mlkkr.aiida.profile import ProfileSpec
    from mlkkr.jukkr.build import BuildOptions

    assert ProfileSpec(name="alice").name == "alice"
    with pytest.raises(InputError, match="profile"):
        ProfileSpec(name="alice\n")
    BuildOptions(march="x86-64-v2").check()
    with pytest.raises(InputError, match="march"):
        BuildOptions(march="native\n").check()


