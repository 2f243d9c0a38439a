{#-
    A mart built by an older version of the project is rebuilt whole by its next run, whatever
    window the run names: dbt's own `should_full_refresh` (overridden here, same name) also answers
    true when the mart's table lacks a column its .yml documents, e.g. `platform` (issue 14).

    Why: a windowed run replaces days with `REPLACE PARTITION`, which needs the new rows' table and
    the mart to have the same columns and sorting key, and the days outside the window cannot gain
    a new key column without being recomputed. `on_schema_change: fail` would otherwise stop every
    run (Dagster's sensor and schedule included) until someone ran `dbt build --full-refresh`. A
    full refresh builds the whole mart into a new table and swaps it in with `EXCHANGE TABLES`, so
    readers see the old table or the new one, never a partial one. Its coverage (macros/
    mart_versions.sql) is invalidated for every day; a run without a window records every day
    again, a windowed one only its window's (its post-hook sees the new table, so an incremental
    run): the other days are answered from raw data until the sensor, which requests exactly the
    days whose coverage lags (analytics_pipeline/automation.py), has them rebuilt.

    The check reads the table's columns (one `system.columns` query per call) and only for the
    marts (tag daily_partitioned); every other node gets dbt's answer unchanged.
-#}
{% macro should_full_refresh() %}
    {%- set configured = config.get('full_refresh') -%}
    {%- if configured is none -%}
        {%- set configured = flags.FULL_REFRESH -%}
    {%- endif -%}
    {{ return(configured or mart_predates_its_columns()) }}
{% endmacro %}


{% macro mart_predates_its_columns() %}
    {%- if not execute or model.resource_type != 'model' or 'daily_partitioned' not in model.tags -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(this.database, this.schema, this.identifier) -%}
    {%- if relation is none -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set existing = adapter.get_columns_in_relation(relation) | map(attribute='name') | list -%}
    {%- for name in model.columns if name not in existing -%}
        {%- if loop.first -%}
            {{ log(this ~ " lacks column " ~ name ~ ": rebuilt whole (an older version built it)", info=true) }}
            {{ return(true) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(false) }}
{% endmacro %}
