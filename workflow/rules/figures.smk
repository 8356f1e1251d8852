# Stage 5: one rule per figure kind (scripts/make_figures.py, CONTRACTS.md), each
# writing <kind>.png (in the Snakemake report) and <kind>.pdf. Figure-only options
# (figures.*) are params of these rules only, so changing them reruns only figures.
# Figures read the aggregated NetCDF files only, never checkpoints.


# G decomposition: spectra of A1, A2, B1, B2 and G minus each member.
rule fig1:
    input:
        script=script_file("make_figures"),
        spectra=f"{RESULTS}/spectra.nc",
        code=library_sources("plotting"),
    output:
        png=report(
            f"{RESULTS}/figures/fig1.png",
            caption="../report/fig1.rst",
            category="Spectra",
        ),
        pdf=f"{RESULTS}/figures/fig1.pdf",
    log:
        f"{LOGS}/figures/fig1.log",
    conda:
        CONDA_ENV
    params:
        options=figure_options("fig1"),
        dpi=config["figures"]["dpi"],
    shell:
        "python {input.script} --figure fig1 {params.options}"
        " --spectra {input.spectra} --dpi {params.dpi}"
        " --out {output.png} > {log} 2>&1"


# Hessian, deflated, train and test, every data set.
rule fig2:
    input:
        script=script_file("make_figures"),
        spectra=f"{RESULTS}/spectra.nc",
        code=library_sources("plotting"),
    output:
        png=report(
            f"{RESULTS}/figures/fig2.png",
            caption="../report/fig2.rst",
            category="Spectra",
        ),
        pdf=f"{RESULTS}/figures/fig2.pdf",
    log:
        f"{LOGS}/figures/fig2.log",
    conda:
        CONDA_ENV
    params:
        options=figure_options("fig2"),
        dpi=config["figures"]["dpi"],
    shell:
        "python {input.script} --figure fig2 {params.options}"
        " --spectra {input.spectra} --dpi {params.dpi}"
        " --out {output.png} > {log} 2>&1"


# Hess, G and H.
rule fig3:
    input:
        script=script_file("make_figures"),
        spectra=f"{RESULTS}/spectra.nc",
        code=library_sources("plotting"),
    output:
        png=report(
            f"{RESULTS}/figures/fig3.png",
            caption="../report/fig3.rst",
            category="Spectra",
        ),
        pdf=f"{RESULTS}/figures/fig3.pdf",
    log:
        f"{LOGS}/figures/fig3.log",
    conda:
        CONDA_ENV
    params:
        options=figure_options("fig3"),
        dpi=config["figures"]["dpi"],
    shell:
        "python {input.script} --figure fig3 {params.options}"
        " --spectra {input.spectra} --dpi {params.dpi}"
        " --out {output.png} > {log} 2>&1"


# Tails of H on a log axis and the log spectrum.
rule fig4:
    input:
        script=script_file("make_figures"),
        spectra=f"{RESULTS}/spectra.nc",
        code=library_sources("plotting"),
    output:
        png=report(
            f"{RESULTS}/figures/fig4.png",
            caption="../report/fig4.rst",
            category="Spectra",
        ),
        pdf=f"{RESULTS}/figures/fig4.pdf",
    log:
        f"{LOGS}/figures/fig4.log",
    conda:
        CONDA_ENV
    params:
        options=figure_options("fig4"),
        dpi=config["figures"]["dpi"],
    shell:
        "python {input.script} --figure fig4 {params.options}"
        " --spectra {input.spectra} --dpi {params.dpi}"
        " --out {output.png} > {log} 2>&1"


# Low-rank deflation against plain LanczosApproxSpec.
rule fig5:
    input:
        script=script_file("make_figures"),
        spectra=f"{RESULTS}/spectra.nc",
        code=library_sources("plotting"),
    output:
        png=report(
            f"{RESULTS}/figures/fig5.png",
            caption="../report/fig5.rst",
            category="Spectra",
        ),
        pdf=f"{RESULTS}/figures/fig5.pdf",
    log:
        f"{LOGS}/figures/fig5.log",
    conda:
        CONDA_ENV
    params:
        options=figure_options("fig5"),
        dpi=config["figures"]["dpi"],
    shell:
        "python {input.script} --figure fig5 {params.options}"
        " --spectra {input.spectra} --dpi {params.dpi}"
        " --out {output.png} > {log} 2>&1"


# Dynamics of Hess, G and H with epoch and sample size.
rule fig6:
    input:
        script=script_file("make_figures"),
        spectra=f"{RESULTS}/spectra.nc",
        code=library_sources("plotting"),
    output:
        png=report(
            f"{RESULTS}/figures/fig6.png",
            caption="../report/fig6.rst",
            category="Dynamics",
        ),
        pdf=f"{RESULTS}/figures/fig6.pdf",
    log:
        f"{LOGS}/figures/fig6.log",
    conda:
        CONDA_ENV
    params:
        options=figure_options("fig6"),
        dpi=config["figures"]["dpi"],
    shell:
        "python {input.script} --figure fig6 {params.options}"
        " --spectra {input.spectra} --dpi {params.dpi}"
        " --out {output.png} > {log} 2>&1"


# Three-level hierarchy of G with epoch and sample size.
rule fig7:
    input:
        script=script_file("make_figures"),
        spectra=f"{RESULTS}/spectra.nc",
        decomposition=f"{RESULTS}/decomposition.nc",
        code=library_sources("plotting"),
    output:
        png=report(
            f"{RESULTS}/figures/fig7.png",
            caption="../report/fig7.rst",
            category="Dynamics",
        ),
        pdf=f"{RESULTS}/figures/fig7.pdf",
    log:
        f"{LOGS}/figures/fig7.log",
    conda:
        CONDA_ENV
    params:
        options=figure_options("fig7"),
        dpi=config["figures"]["dpi"],
    shell:
        "python {input.script} --figure fig7 {params.options}"
        " --spectra {input.spectra} --decomposition {input.decomposition} --dpi {params.dpi}"
        " --out {output.png} > {log} 2>&1"


# Self-check of the estimators on synthetic matrices.
rule fig8:
    input:
        script=script_file("make_figures"),
        selfcheck=f"{RESULTS}/selfcheck.nc",
        code=library_sources("plotting"),
    output:
        png=report(
            f"{RESULTS}/figures/fig8.png",
            caption="../report/fig8.rst",
            category="Self-check",
        ),
        pdf=f"{RESULTS}/figures/fig8.pdf",
    log:
        f"{LOGS}/figures/fig8.log",
    conda:
        CONDA_ENV
    params:
        options=figure_options("fig8"),
        dpi=config["figures"]["dpi"],
    shell:
        "python {input.script} --figure fig8 {params.options}"
        " --selfcheck {input.selfcheck} --dpi {params.dpi}"
        " --out {output.png} > {log} 2>&1"


# Hessian without deflation, every data set.
rule fig9:
    input:
        script=script_file("make_figures"),
        spectra=f"{RESULTS}/spectra.nc",
        code=library_sources("plotting"),
    output:
        png=report(
            f"{RESULTS}/figures/fig9.png",
            caption="../report/fig9.rst",
            category="Spectra",
        ),
        pdf=f"{RESULTS}/figures/fig9.pdf",
    log:
        f"{LOGS}/figures/fig9.log",
    conda:
        CONDA_ENV
    params:
        options=figure_options("fig9"),
        dpi=config["figures"]["dpi"],
    shell:
        "python {input.script} --figure fig9 {params.options}"
        " --spectra {input.spectra} --dpi {params.dpi}"
        " --out {output.png} > {log} 2>&1"


# Learning curves.
rule fig10:
    input:
        script=script_file("make_figures"),
        training=f"{RESULTS}/training.nc",
        spectra=f"{RESULTS}/spectra.nc",
        code=library_sources("plotting"),
    output:
        png=report(
            f"{RESULTS}/figures/fig10.png",
            caption="../report/fig10.rst",
            category="Training",
        ),
        pdf=f"{RESULTS}/figures/fig10.pdf",
    log:
        f"{LOGS}/figures/fig10.log",
    conda:
        CONDA_ENV
    params:
        options=figure_options("fig10"),
        dpi=config["figures"]["dpi"],
    shell:
        "python {input.script} --figure fig10 {params.options}"
        " --training {input.training} --spectra {input.spectra} --dpi {params.dpi}"
        " --out {output.png} > {log} 2>&1"
