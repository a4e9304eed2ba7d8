# One rule per stage of the table (and per compare variant that changes it), written from
# `snakemake_rules(config)`: paths, params, wildcards, threads and GPUs all come from the table.
# Each rule's params are the stage's keys as one JSON value (any change or swap reruns it), and
# its `code` input is the stage module plus every core module it imports (an edit reruns it).


def stage_rule(spec):
    """One `rule:` from a Rule of the table. A function, not a loop body: Snakemake evaluates the
    shell command again when the job runs, and a loop variable would by then name the last rule."""

    rule:
        name:
            spec.name
        input:
            unpack(spec.inputs),
        output:
            **{
                key: report(path, caption=f"../report/{spec.stage.shown[key]}", category="Pseudo masks")
                if key in spec.stage.shown
                else directory(path) if spec.stage.is_folder(key) else path
                for key, path in spec.outputs.items()
            },
        params:
            values=spec.params,
        wildcard_constraints:
            **spec.wildcard_constraints,
        conda:
            "../envs/maskforge.yaml"
        log:
            spec.log,
        benchmark:
            spec.benchmark,
        threads: spec.threads
        resources:
            **({"gpu": spec.stage.gpu} if spec.stage.gpu else {}),
        shell:
            spec.shell


for spec in snakemake_rules(config):
    stage_rule(spec)
