{#-
    The columns together identify at most one row (a compound unique key).

    Why our own test: dbt_utils.unique_combination_of_columns would need `dbt deps`, which fetches
    from hub.getdbt.com; this project must build where that is unreachable.
-#}
{% test unique_combination(model, columns) %}

select
    {{ columns | join(', ') }},
    count() as count_rows

from {{ model }}

group by {{ columns | join(', ') }}

having count_rows > 1

{% endtest %}
