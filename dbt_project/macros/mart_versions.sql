{#-
    Per day, the raw version each mart was built from, so the query service answers a day from a
    mart only when the mart has caught up with that day's raw data (docs/marts-coverage.md).

    The consumers stamp `raw_day_versions` (day, server time) after every batch that wrote raw
    rows or deletes of that day. A dbt run stamps its start on the server (`dbt_invocations`), each
    mart invalidates the days it is about to rebuild before touching them (pre-hook, so a build
    that fails halfway leaves those days to the raw tables) and, once its rows are in, records the
    run's start as its version of every day it rebuilt whole (post-hook): the raw data written
    before that instant is in the mart. A mart built from another mart takes the older of the two
    versions, day by day. The newest record of a (mart, day) wins. Between the two hooks the day's
    rows are replaced in one step (macros/replace_window.sql): a reader sees them older or newer,
    never missing or doubled.
-#}

{% macro mart_versions_table() %}{{ target.schema }}.mart_day_versions{% endmacro %}

{% macro invocations_table() %}{{ target.schema }}.dbt_invocations{% endmacro %}

{#- on-run-start: this run's start, by the server's clock. mart_day_versions is created with the
    raw tables (tweetflow/schema.py); this bookkeeping table is dbt's own. -#}
{% macro mart_versions_setup() %}
    {% do run_query(
        "create table if not exists " ~ invocations_table() ~ " (
            invocation_id String, started DateTime64(6, 'UTC') default now64(6, 'UTC')
        ) engine = MergeTree order by invocation_id
        ttl toDateTime(started) + interval 30 day
        comment 'When each dbt run started, by the server clock'") %}
    insert into {{ invocations_table() }} (invocation_id) values ('{{ invocation_id }}')
{% endmacro %}

{#- The days of the run's window (whole days: macros/event_window.sql). A run without a window (or
    the first build) rebuilds every day that has raw data. -#}
{% macro window_days() %}
    {%- set bounds = window_bounds() -%}
    {%- if bounds is none or not is_incremental() -%}
        select distinct day from {{ target.schema }}.raw_day_versions
    {%- else -%}
        select toDate({{ bounds[0] }}) + number as day
        from numbers(toUInt64(greatest(0, dateDiff('day', {{ bounds[0] }}, {{ bounds[1] }}))))
    {%- endif -%}
{% endmacro %}

{#- pre-hook: the days about to be rebuilt are no longer covered by this mart. -#}
{% macro invalidate_mart_days() %}
    insert into {{ mart_versions_table() }} (mart, day, raw_version, invocation_id)
    select '{{ this.identifier }}', day, toDateTime64(0, 6, 'UTC'), '{{ invocation_id }}'
    from ({{ window_days() }})
{% endmacro %}

{#- The days this run's pre-hook invalidated for this mart: what it rebuilds. Read back rather
    than recomputed, so the post-hook vouches for the same days even when the pre-hook saw the
    mart rebuilt whole and the post-hook sees it incremental (macros/mart_upgrade.sql). -#}
{% macro invalidated_days() %}
    select distinct day from {{ mart_versions_table() }}
    where mart = '{{ this.identifier }}' and invocation_id = '{{ invocation_id }}'
{% endmacro %}

{#- post-hook: the rebuilt days are covered up to the run's start (or the upstream mart's). -#}
{% macro record_mart_days() %}
    {%- set upstream = [] -%}
    {%- for node in model.depends_on.nodes -%}
        {%- if node.startswith('model.') and not node.split('.')[-1].startswith('stg_') -%}
            {%- do upstream.append(node.split('.')[-1]) -%}
        {%- endif -%}
    {%- endfor -%}
    insert into {{ mart_versions_table() }} (mart, day, raw_version, invocation_id)
    select '{{ this.identifier }}', d.day,
        {% for _ in upstream %}least({% endfor %}s.started{% for _ in upstream %}, u{{ loop.index }}.v){% endfor %},
        '{{ invocation_id }}'
    from ({{ invalidated_days() }}) as d
    cross join (
        select min(started) as started from {{ invocations_table() }}
        where invocation_id = '{{ invocation_id }}'
    ) as s
    {% for name in upstream %}
    left join (
        select day, argMax(raw_version, built_at) as v from {{ mart_versions_table() }}
        where mart = '{{ name }}' group by day
    ) as u{{ loop.index }} on u{{ loop.index }}.day = d.day
    {% endfor %}
{% endmacro %}
