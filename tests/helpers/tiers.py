"""The tests left out of the fast tier (``make check`` = ``pytest -m "not lab and not slow"``), in one place.

Each entry is a node id prefix (a module, or a test with all its parameters). They are the slowest non-lab tests of a
``pytest --durations=0`` run on 2 cores (2026-12-06): mostly the Pulumi program under mocks in a fresh interpreter,
the real validators over every prod file, BIRD and the health agent in a namespace. ``make test`` runs them all;
tests/unit/test_suite_layout.py checks that every entry still names a test.
"""

from __future__ import annotations

SLOW: tuple[str, ...] = (
    "tests/validators/test_real_tools.py::test_cloud_init_schema_every_user_data",  # ~12 s alone
    "tests/validators/test_real_tools.py::test_cloud_init_knows_every_top_level_key",
    "tests/validators/test_health_agent_bird.py",  # BIRD + Caddy in a namespace, crash-loop damping
    "tests/unit/test_lab_build.py::test_every_bird_config_parses",  # bird -p over every prod config
    "tests/unit/test_policies.py::test_pack_passes_the_prod_program",  # the prod program under mocks
    "tests/unit/test_policies.py::test_bgp_export_own_prefixes_on_rendered_configs",
    "tests/unit/test_lab_rollout.py::test_odd_generations_boot_beside_the_even_ones",
    "tests/unit/test_lab_rollout.py::test_changed_pops_are_the_ones_whose_lab_files_differ",
    "tests/unit/test_lab_well_connected.py",
    "tests/unit/test_policy_bird.py::test_policy_holds_for_every_password_the_model_accepts",  # hypothesis, 200 each
    "tests/unit/test_policy_bird.py::test_policy_holds_for_every_password_birds_quoting_can_carry",
    "tests/unit/test_policy_bird.py::test_no_password_makes_a_leaking_config_pass",
    "tests/unit/test_bad_input.py::test_program_refuses_bad_config_before_creating_anything",  # a program run each
    "tests/unit/test_bad_input.py::test_unreadable_stack_files",
    "tests/unit/test_rollout.py::test_gate_timeout_comes_from_the_stack",
    "tests/unit/test_rollout.py::test_instances_of_wave_k_plus_1_depend_on_every_gate_of_wave_k",
    "tests/unit/test_anycast_tls_script.py",  # moto's S3 server
    "tests/unit/test_pulumi_project.py::test_the_program_runs_with_the_config_the_cli_hands_it",
    "tests/unit/test_program.py::test_free_stack_is_ipv6_only_in_dns",
    "tests/unit/test_tls.py::test_program_creates_the_cloud_side_conforming_to_the_schemas",
    "tests/unit/test_lab_plan.py::test_pops_subset",
    "tests/unit/test_lab_prometheus.py::test_expected_targets_and_summary",
    "tests/unit/test_lab_monitoring.py::test_same_document_as_the_program_except_addresses",
)


def is_slow(nodeid: str) -> bool:
    return any(nodeid == s or nodeid.startswith((f"{s}::", f"{s}[")) for s in SLOW)
