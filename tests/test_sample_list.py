"""`rcn_jax.sample_list`: the organisers' list of the MEGC2019 composite and its subject keys."""

import collections
import itertools

import pytest

from rcn_jax import sample_list


def test_subject_keys_pad_samm_numbers_and_name_a_bad_one():
  assert sample_list.subject_key("samm", " 6 ") == "006"
  assert sample_list.subject_key("smic", "s01") == "s01"
  with pytest.raises(ValueError, match="samm subject 'x6': expected a number"):
    sample_list.subject_key("samm", "x6")


def test_the_list_has_the_published_counts_in_its_own_order():
  listed = sample_list.read_official_list()
  assert len(listed) == 442
  # One block per database, in the list's order whatever order a subset is asked in.
  assert [dataset for dataset, _ in itertools.groupby(s.dataset for s in listed)] == ["casme2", "smic", "samm"]
  assert collections.Counter(s.dataset for s in listed) == {"casme2": 145, "smic": 164, "samm": 133}
  assert sample_list.read_official_list(["samm", "casme2"]) == [s for s in listed if s.dataset != "smic"]
  assert {s.label for s in listed} == set(range(len(sample_list.CLASS_NAMES)))
  assert all(len(s.subject) == 3 and s.subject.isdigit() for s in listed if s.dataset == "samm")
  with pytest.raises(ValueError, match=r"unknown dataset\(s\) \['mmew'\]"):
    sample_list.read_official_list(["smic", "mmew"])

