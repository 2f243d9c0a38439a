{#-
    The event-time window of an incremental run, from `--vars '{start: ..., end: ...}'`, widened to
    whole UTC days: a mart replaces whole days (one partition each, macros/replace_window.sql) and
    vouches for whole days (macros/mart_versions.sql), so a window reaching into a day rebuilds all
    of it. Dagster's windows are whole days already.

    Why recompute whole days rather than merge by key: a late delete or a replay can make a row of
    an old hour vanish entirely (its last Tweet was deleted), and a merge by key never removes a
    row that the new data lacks. Recomputing whole days from staging and replacing them is exact
    whatever arrived late.
-#}

{% macro event_window() %}
    {%- set start, end = var('start', none), var('end', none) -%}
    {%- if (start is none) != (end is none) -%}
        {{ exceptions.raise_compiler_error("vars start and end go together (got start=" ~ start ~ ", end=" ~ end ~ ")") }}
    {%- endif -%}
    {{ return((start, end) if start is not none else none) }}
{% endmacro %}


{#- The window's bounds as SQL, [first midnight, last midnight): `start` down to its day, `end` up
    to the next midnight unless it is one. None without a window. -#}
{% macro window_bounds() %}
    {%- set window = event_window() -%}
    {%- if window is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return((
        "toStartOfDay(toDateTime('" ~ window[0] ~ "', 'UTC'))",
        "(toStartOfDay(toDateTime('" ~ window[1] ~ "', 'UTC') - 1) + toIntervalDay(1))",
    )) }}
{% endmacro %}


{#- A predicate keeping the rows of `column` inside the window, widened backwards by
    `lookback_hours` for models that need history before it (trending baselines). True for
    everything when the run is not incremental or has no window. -#}
{% macro in_window(column, lookback_hours=0) %}
    {%- set bounds = window_bounds() -%}
    {%- if bounds is none or not is_incremental() -%}
        1 = 1
    {%- else -%}
        {{ column }} >= {{ bounds[0] }} - toIntervalHour({{ lookback_hours }})
        and {{ column }} < {{ bounds[1] }}
    {%- endif -%}
{% endmacro %}
