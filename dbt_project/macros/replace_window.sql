{#-
    How an incremental run puts a mart's recomputed window in place: in one step per day, so a
    reader sees each day whole, as it was or as it is now, never missing or doubled, whatever other
    runs do at the same time (issue 15; the test: tests/dbt_project/test_atomic_rebuild.py).

    The marts are partitioned by day (`toYYYYMMDD` of their time column) and use dbt-clickhouse's
    `insert_overwrite` strategy; this macro overrides the adapter's of the same name. The window's
    rows are built into a new table first. Then:
    - a run with a window swaps each day of the window for the new table's with
      `ALTER TABLE ... REPLACE PARTITION`, atomic per partition; a day left with no rows (its last
      Tweet deleted) is swapped for an empty one (`allow_replace_partition_from_empty_source`).
      The adapter's own macro swaps only the days the new rows fall in, so such a day would keep
      its old rows: that is why this one exists;
    - a run without a window recomputes everything, and `EXCHANGE TABLES` swaps the whole table;
    - a mart built with other partitions (by month, before days) is moved over once: the new table
      also receives the mart's rows outside the window, then `EXCHANGE TABLES`.

    Why days (and not the months the marts had): the window, the coverage records
    (macros/mart_versions.sql) and Dagster's partitions are all days, so a run replaces exactly
    what it recomputed: a one-day run recomputes one day (a month would be up to 31), and never
    copies a day that a concurrent run may be rebuilding. The cost is one partition per day of
    history (7,300 over 20 years, inside ClickHouse's advice of 1,000-10,000), read part by part:
    `python -m bench.mart_partitions` (7,300 days, embedded endpoint) measured a week's question
    at 21 ms against 17 ms by month, a year's at 137 ms against 7 ms, all 20 years at 0.9 s against
    0.03 s, and a full build at 11 s against 0.4 s. Weeks would sit between (a year 23 ms) at up to
    7 days recomputed per run; see docs/marts-coverage.md.
-#}
{% macro clickhouse__incremental_insert_overwrite(existing_relation, partition_by, is_distributed=False) %}
    {%- if is_distributed -%}
        {{ exceptions.raise_compiler_error(this ~ ": the marts' day replacement is for plain tables (docs/deployment.md, cluster mode)") }}
    {%- endif -%}
    {%- set new_data = existing_relation.incorporate(path={"identifier": existing_relation.identifier
        ~ '__dbt_new_data_' ~ invocation_id.replace('-', '_')}) -%}
    {{ drop_relation_if_exists(new_data) }}
    {% call statement('main') %}
        {{ get_create_table_as_sql(False, new_data, sql) }}
    {% endcall %}

    {%- set keys = partition_keys(existing_relation, new_data) -%}
    {%- if not keys[1].startswith('toYYYYMMDD(') -%}
        {{ exceptions.raise_compiler_error(this ~ " must be partitioned by day: partition_by='toYYYYMMDD(<time column>)', not " ~ keys[1]) }}
    {%- endif -%}
    {%- if window_bounds() is none or keys[0] != keys[1] -%}
        {%- if window_bounds() is not none -%}
            {% do keep_days_outside_window(existing_relation, new_data, keys[0]) %}
        {%- endif -%}
        {% do exchange_tables_atomic(new_data, existing_relation) %}
    {%- else -%}
        {% do replace_window_days(existing_relation, new_data) %}
    {%- endif -%}
    {% do adapter.drop_relation(new_data) %}
{% endmacro %}


{#- The partition keys of the mart and of its new table, e.g. toYYYYMMDD(hour). -#}
{% macro partition_keys(existing_relation, new_data) %}
    {%- set found = run_query("select name, partition_key from system.tables where database = '"
        ~ existing_relation.schema ~ "' and name in ('" ~ existing_relation.identifier ~ "', '"
        ~ new_data.identifier ~ "')") -%}
    {%- set key_of = {} -%}
    {%- for row in found.rows -%}
        {#- dbt-clickhouse writes `partition by (key)`, which ClickHouse keeps parenthesized -#}
        {%- do key_of.update({row[0]: row[1][1:-1] if row[1].startswith('(') and row[1].endswith(')') else row[1]}) -%}
    {%- endfor -%}
    {{ return((key_of[existing_relation.identifier], key_of[new_data.identifier])) }}
{% endmacro %}


{#- Swap every day of the window, and any day the new rows fall in, for the new table's (each day
    in one step; a reader of several days may see some rebuilt and some not yet). -#}
{% macro replace_window_days(existing_relation, new_data) %}
    {%- set days = run_query("select distinct partition_id from system.parts where active and database = '"
        ~ existing_relation.schema ~ "' and (table = '" ~ new_data.identifier ~ "' or (table = '"
        ~ existing_relation.identifier ~ "' and partition_id in (select toString(toYYYYMMDD(day)) from ("
        ~ window_days() ~ "))))") -%}
    {#- 500 days per ALTER keeps a backfill of decades under the server's max_query_size. -#}
    {%- for chunk in days.rows | batch(500) -%}
        {% call statement('replace_partitions_' ~ loop.index) %}
            alter table {{ existing_relation }} {{ on_cluster_clause(existing_relation) }}
            {%- for row in chunk %}
                replace partition id '{{ row[0] }}' from {{ new_data }}{{ ',' if not loop.last }}
            {%- endfor %}
            {#- Servers before 26.6 allowed an empty source without the setting and do not know it. -#}
            {%- if adapter.is_at_or_after_version('26.6') %}
                settings allow_replace_partition_from_empty_source = 1
            {%- endif %}
        {% endcall %}
    {%- endfor -%}
{% endmacro %}


{#- Copy the mart's rows outside the window into its new table (a mart partitioned otherwise, once). -#}
{% macro keep_days_outside_window(existing_relation, new_data, old_key) %}
    {%- set column = old_key[old_key.index('(') + 1:-1] -%}
    {%- set columns = adapter.get_columns_in_relation(new_data) | map(attribute='quoted') | join(', ') -%}
    {% call statement('keep_days_outside_window') %}
        insert into {{ new_data }} ({{ columns }})
        select {{ columns }} from {{ existing_relation }}
        where toDate({{ column }}) not in ({{ window_days() }})
    {% endcall %}
{% endmacro %}
