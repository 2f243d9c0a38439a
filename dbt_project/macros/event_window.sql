{#-
    The event-time window of an incremental run, from `--vars '{start: ..., end: ...}'`.

    Why delete-then-insert over a window rather than merging by key: a late delete or a replay can
    make a row of an old hour vanish entirely (its last Tweet was deleted), and a merge by key
    never removes a row that the new data lacks. Recomputing whole days from staging and replacing
    them is exact whatever arrived late. Windows are day-aligned (Dagster's daily partitions).
-#}

{% macro event_window() %}
    {%- set start, end = var('start', none), var('end', none) -%}
    {%- if (start is none) != (end is none) -%}
        {{ exceptions.raise_compiler_error("vars start and end go together (got start=" ~ start ~ ", end=" ~ end ~ ")") }}
    {%- endif -%}
    {{ return((start, end) if start is not none else none) }}
{% endmacro %}


{#- A predicate keeping the rows of `column` inside the window, widened backwards by
    `lookback_hours` for models that need history before it (trending baselines). True for
    everything when the run is not incremental or has no window. -#}
{% macro in_window(column, lookback_hours=0) %}
    {%- set window = event_window() -%}
    {%- if window is none or not is_incremental() -%}
        1 = 1
    {%- else -%}
        {{ column }} >= toDateTime('{{ window[0] }}', 'UTC') - toIntervalHour({{ lookback_hours }})
        and {{ column }} < toDateTime('{{ window[1] }}', 'UTC')
    {%- endif -%}
{% endmacro %}


{#- Pre-hook of the incremental marts: remove the rows the run is about to recompute. A run
    without a window recomputes, hence removes, everything. -#}
{% macro delete_window(column) %}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ in_window(column) }}
    {%- endif -%}
{% endmacro %}
