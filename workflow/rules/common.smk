# The config, checked, and the plan every rule looks its inputs and params up in (emdiffuse/plan/).
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import validate

from emdiffuse.config import drop_null_blocks, export_repository
from emdiffuse.plan import Plan, alternatives
from emdiffuse.plan.schema import check_schema, workflow_schema, write_workflow_schema
from emdiffuse.provenance import code_digest

export_repository()  # where the per-rule conda envs install the package from (envs/*.post-deploy.sh)
drop_null_blocks(config)
schema = workflow_schema()  # the schema file, with every name list from its registry
check_schema(config, schema)  # a bad key or value: one line naming it
validate(config, schema=str(write_workflow_schema(Path.cwd(), schema)))
# fills in voxel sizes, checks what the schema cannot (cross-references); the real EM images shipped
# with the workflow judge how EM-like the phantom looks
plan = Plan(config, reference_em=str(Path(workflow.basedir).parent / "resources" / "reference-em"))
for note in plan.notes:
    logger.info(note)


wildcard_constraints:
    **plan.wildcard_constraints(),
