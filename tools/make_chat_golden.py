#!/usr/bin/env python3
"""Regenerates tests/golden/chat/*.json: chat templates rendered by real jinja2.

The environment is the one Hugging Face transformers builds for
apply_chat_template: ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True, extensions=[loopcontrols]) with HF's `tojson` filter and the
globals raise_exception() and strftime_now(). The render context is built as
apply_chat_template builds it: messages, tools (None when absent), documents
(None), add_generation_prompt, bos_token, eos_token, then any extra variables.

Outputs (small, committed; the template texts themselves are not):
  tests/golden/chat/<template>.json   real templates x conversations
  tests/golden/chat/jinja_constructs.json   one small template per construct

Templates come from the cache scripts/setup fills:
  ~/.cache/tokenfab/testdata/llama.cpp-0.3.36/templates/*.jinja
  the tokenizer.chat_template of ~/.cache/tokenfab/models/SmolLM2-135M-Instruct.Q4_1.gguf

Usage: tools/make_chat_golden.py [--out tests/golden/chat]
"""

import argparse
import datetime
import json
import os
import pathlib

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "tokenfab"
TEMPLATES = CACHE / "testdata" / "llama.cpp-0.3.36" / "templates"
SMOLLM_GGUF = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

# strftime_now() reads this instant in both implementations: noon UTC, so the
# date is the same in every time zone from UTC-11 to UTC+11.
NOW_EPOCH_SECONDS = 1726401600  # 2024-09-15 12:00:00 UTC


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.datetime.fromtimestamp(NOW_EPOCH_SECONDS).strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, context):
    """Returns {"expected": text} or {"error": message, "error_type": class name}."""
    try:
        return {"expected": env.from_string(source).render(**context)}
    except jinja2.exceptions.TemplateSyntaxError:
        raise
    except Exception as e:  # noqa: BLE001 - the golden records what jinja2 raised
        return {"error": str(e), "error_type": type(e).__name__}


def smollm_template():
    import gguf  # only needed for this template

    reader = gguf.GGUFReader(str(SMOLLM_GGUF))
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


# ---- Conversations ----

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city — in °C or °F.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7, "default": 1},
                "threshold": {"type": "number", "default": 0.5},
            },
            "required": ["city"],
        },
        "return": {"type": "object"},
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a time zone.",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": []},
    },
}

BASIC = [
    ("single_user", [{"role": "user", "content": "Hello!"}], True, {}),
    ("system_and_user",
     [{"role": "system", "content": "You are a terse pirate."},
      {"role": "user", "content": "What is 2+2?"}], True, {}),
    ("multi_turn_with_system",
     [{"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Name a color."},
      {"role": "assistant", "content": "Blue."},
      {"role": "user", "content": "Another one?"}], True, {}),
    ("multi_turn_no_generation_prompt",
     [{"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello! How can I help?"},
      {"role": "user", "content": "Tell me a joke."},
      {"role": "assistant", "content": "Why did the chicken cross the road?"}], False, {}),
    ("non_ascii",
     [{"role": "system", "content": "Réponds en français ✓"},
      {"role": "user", "content": "こんにちは 🌍 — ça va?\n  « naïve » Ωμέγα  "}], True, {}),
    ("empty_content",
     [{"role": "user", "content": ""},
      {"role": "assistant", "content": ""},
      {"role": "user", "content": ""}], True, {}),
    ("special_characters",
     [{"role": "user",
       "content": "He said \"hi\" \\ {{ not a tag }} {% raw %} 'quoted'\ttab\r\nCRLF</s><|eot_id|>"}],
     True, {}),
    ("whitespace_edges",
     [{"role": "system", "content": "  padded system  \n"},
      {"role": "user", "content": "\n\nleading newlines and trailing spaces   "}], False, {}),
]


def tool_conversation(call_id="call_0001", second_call=False, content_as_dict=False):
    calls = [{"id": call_id, "type": "function",
              "function": {"name": "get_weather",
                           "arguments": {"city": "Zürich", "unit": "celsius", "days": 2,
                                         "threshold": 1.0, "flags": [True, None]}}}]
    if second_call:
        calls.append({"id": "call_0002", "type": "function",
                      "function": {"name": "get_time", "arguments": {"tz": "Europe/Zurich"}}})
    result = {"temperature": 21.5, "condition": "sunny ☀", "ok": True} if content_as_dict \
        else "{\"temperature\": 21.5, \"condition\": \"sunny\"}"
    return [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather in Zürich?"},
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "tool_call_id": call_id, "name": "get_weather", "content": result},
        {"role": "assistant", "content": "It is 21.5 °C and sunny."},
        {"role": "user", "content": "Thanks!"},
    ]


TEMPLATES_SPEC = {
    # name: (loader, bos, eos, extra cases)
    "smollm2-135m-instruct": {
        "source": "gguf:SmolLM2-135M-Instruct.Q4_1.gguf",
        "bos": "<|im_start|>", "eos": "<|im_end|>",
        "cases": [],
    },
    "Qwen-Qwen2.5-7B-Instruct": {
        "source": "templates/Qwen-Qwen2.5-7B-Instruct.jinja",
        "bos": "", "eos": "<|im_end|>",
        "cases": [
            ("tools", tool_conversation(), True, {"tools": [WEATHER_TOOL, TIME_TOOL]}),
            ("tools_no_system", tool_conversation()[1:], True, {"tools": [WEATHER_TOOL]}),
            ("parallel_tool_calls", tool_conversation(second_call=True), False,
             {"tools": [WEATHER_TOOL, TIME_TOOL]}),
            ("raises_on_no_messages", [], True, {}),
        ],
    },
    "meta-llama-Llama-3.1-8B-Instruct": {
        "source": "templates/meta-llama-Llama-3.1-8B-Instruct.jinja",
        "bos": "<|begin_of_text|>", "eos": "<|eot_id|>",
        "cases": [
            ("tools", tool_conversation(content_as_dict=True), True, {"tools": [WEATHER_TOOL]}),
            ("tools_in_system_message", tool_conversation(), True,
             {"tools": [WEATHER_TOOL, TIME_TOOL], "tools_in_user_message": False,
              "date_string": "01 Jan 2025"}),
            ("builtin_tools",
             [{"role": "user", "content": "Search the web for jinja."},
              {"role": "assistant", "tool_calls": [
                  {"type": "function", "function": {"name": "brave_search",
                                                    "arguments": {"query": "jinja2 docs"}}}]},
              {"role": "ipython", "content": "Jinja is a templating engine."}], True,
             {"builtin_tools": ["brave_search", "wolfram_alpha", "code_interpreter"]}),
            ("raises_on_multiple_tool_calls", tool_conversation(second_call=True), True,
             {"tools": [WEATHER_TOOL, TIME_TOOL]}),
        ],
    },
    "meta-llama-Llama-3.2-3B-Instruct": {
        "source": "templates/meta-llama-Llama-3.2-3B-Instruct.jinja",
        "bos": "<|begin_of_text|>", "eos": "<|eot_id|>",
        "cases": [
            ("tools", tool_conversation(content_as_dict=True), True,
             {"tools": [WEATHER_TOOL], "date_string": "26 Jul 2024"}),
            ("date_from_strftime_now", [{"role": "user", "content": "What day is it?"}], True, {}),
            ("raises_on_multiple_tool_calls", tool_conversation(second_call=True), True,
             {"tools": [WEATHER_TOOL, TIME_TOOL]}),
        ],
    },
    "mistralai-Mistral-Nemo-Instruct-2407": {
        "source": "templates/mistralai-Mistral-Nemo-Instruct-2407.jinja",
        "bos": "<s>", "eos": "</s>",
        "cases": [
            ("tools", tool_conversation(call_id="abcDEF123"), True,
             {"tools": [WEATHER_TOOL, TIME_TOOL]}),
            ("tool_result_as_dict", tool_conversation(call_id="abcDEF123", content_as_dict=True),
             True, {"tools": [WEATHER_TOOL]}),
            ("raises_on_roles_not_alternating",
             [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}], True, {}),
            ("raises_on_bad_tool_call_id", tool_conversation(call_id="short"), True,
             {"tools": [WEATHER_TOOL]}),
        ],
    },
}


def load_template(spec):
    if spec["source"].startswith("gguf:"):
        return smollm_template()
    return (TEMPLATES / spec["source"].split("/", 1)[1]).read_text(encoding="utf-8")


def template_goldens(env, out_dir):
    for name, spec in TEMPLATES_SPEC.items():
        source = load_template(spec)
        cases = []
        for case_name, messages, add_generation_prompt, extra in BASIC + spec["cases"]:
            context = {"messages": messages, "tools": None, "documents": None,
                       "add_generation_prompt": add_generation_prompt,
                       "bos_token": spec["bos"], "eos_token": spec["eos"]}
            context.update(extra)
            case = {"name": case_name, "messages": messages,
                    "add_generation_prompt": add_generation_prompt,
                    "bos_token": spec["bos"], "eos_token": spec["eos"], "extra": extra,
                    "now_epoch_seconds": NOW_EPOCH_SECONDS}
            case.update(render(env, source, context))
            cases.append(case)
        write(out_dir / f"{name}.json",
              {"template": spec["source"], "generator": f"tools/make_chat_golden.py (jinja2 {jinja2.__version__})",
               "cases": cases})


# ---- One small template per construct ----

CONTEXT = {
    "xs": [3, 1, 2], "words": ["b", "A", "a", "B"], "s": "  Héllo, World  ", "n": 7, "f": 2.5,
    "d": {"z": 1, "a": [1, 2.0, None, True], "nested": {"k": "v"}},
    "msgs": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
             {"role": "assistant", "content": "yo", "tool_calls": []},
             {"role": "user", "content": "bye"}],
    "none_value": None, "empty": "", "t": True, "uni": "ünï ⚡ 日本",
}

CONSTRUCTS = [
    # whitespace control, trim_blocks, lstrip_blocks
    ("text_only", "plain text\n"),
    ("trailing_newline_kept_once", "a\n\n"),
    ("trim_blocks", "{% if true %}\nyes\n{% endif %}\nafter"),
    ("lstrip_blocks", "  {% if true %}\n    x\n  {% endif %}\ndone"),
    ("lstrip_not_for_variables", "  {{ 'v' }}\n  {# c #}\nend"),
    ("minus_strips", "a   {%- if true -%}   b   {%- endif -%}   c"),
    ("variable_minus", "x \n {{- 1 -}} \n y"),
    ("plus_disables_lstrip", "  {%+ if true %}x{% endif %}"),
    ("plus_disables_trim", "{% if true +%}\nx{% endif %}"),
    ("comment_trimmed", "a\n{# comment #}\nb\n  {#- c -#}  \nc"),
    ("raw_block", "{% raw %}{{ not parsed }}{% endraw %}|{%- raw -%}  x  {%- endraw -%}|"),
    ("crlf_normalized", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n"),
    ("tag_midline", "x {% if true %}y{% endif %} z\n  {%- set q = 1 %} w"),
    # literals and printing
    ("print_scalars", "{{ 1 }}|{{ 1.0 }}|{{ 1.5e300 }}|{{ 1e-7 }}|{{ 0.1 + 0.2 }}|{{ true }}|{{ none }}|{{ 10/4 }}|{{ 10//4 }}"),
    ("print_containers", "{{ [1, 'a', 1.0, none, true, (1,)] }}|{{ {'k': 'it\\'s', 2: [\"q\\\"\"]} }}|{{ (1, 2) }}"),
    ("string_escapes", "{{ 'tab\\tnew\\nline \\x41\\u00e9\\U0001F600 \\q' }}|{{ \"dq ' \" }}"),
    ("print_dict_from_context", "{{ d }}|{{ msgs[2] }}"),
    ("print_namespace_and_loop", "{% set ns = namespace(a=1, b='x') %}{{ ns }}{% for i in xs %}{{ loop }}{% endfor %}"),
    ("repr_unicode", "{{ [uni, '\\u200b\\xa0', '\\x07'] }}"),
    # arithmetic and operators
    ("arithmetic", "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 1 + 2 * 3 - 4 / 2 }}"),
    ("concat_tilde", "{{ 'a' ~ 1 ~ none ~ undefined_var ~ 2.0 }}"),
    ("string_ops", "{{ 'ab' * 3 }}{{ 2 * [1] }}{{ 'x' + 'y' }}{{ [1] + [2] }}"),
    ("comparisons", "{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ 1 == 1.0 }}{{ 'a' < 'b' }}{{ [1, 2] < [1, 3] }}{{ 1 != 'a' }}{{ true == 1 }}"),
    ("logic", "{{ 0 or 'x' }}|{{ 'a' and 'b' }}|{{ not none }}|{{ none or [] }}|{{ 1 and 0 }}"),
    ("in_operator", "{{ 'ell' in 'hello' }}{{ 2 in xs }}{{ 'z' in d }}{{ 'q' not in d }}{{ 1 in undefined_var }}"),
    ("cond_expr", "{{ 'y' if t else 'n' }}|{{ 'y' if none else 'n' }}|{{ 'y' if false }}|{{ 1 if false else 2 if true else 3 }}"),
    ("unary_and_filters", "{{ -n|abs }}|{{ - 3 }}|{{ not t }}"),
    # attribute / item access, slicing, undefined
    ("access", "{{ d.z }}{{ d['a'][1] }}{{ d.nested.k }}{{ msgs[-1].content }}{{ xs.0 }}{{ d.missing }}|{{ xs[10] }}|{{ none_value.x }}|{{ s.foo }}"),
    ("slicing", "{{ xs[1:] }}{{ xs[::-1] }}{{ xs[:-1] }}{{ s[2:7] }}{{ uni[::-1] }}{{ xs[::2] }}{{ s[-3:] }}{{ xs[5:] }}"),
    ("undefined_behaviour", "[{{ nope }}]{% for x in nope %}x{% endfor %}{{ nope is defined }}{{ nope|length }}{{ nope|default('dflt') }}{{ nope == nope }}"),
    ("undefined_attribute_error", "{{ nope.attr }}"),
    ("undefined_add_error", "{{ nope + 'x' }}"),
    ("missing_key_then_add_error", "{{ d.missing + 1 }}"),
    ("none_add_error", "{{ none_value + 1 }}"),
    ("string_plus_int_error", "{{ 'a' + 1 }}"),
    ("dict_method_shadowing", "{{ d.items()|list }}{{ d['keys'] is defined }}"),
    # statements
    ("for_loop_vars", "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}"),
    ("for_prev_next_cycle", "{% for x in xs %}{{ loop.previtem }}-{{ loop.nextitem }}-{{ loop.cycle('a', 'b') }};{% endfor %}"),
    ("for_else", "{% for x in [] %}x{% else %}empty{% endfor %}{% for x in xs %}{{ x }}{% else %}no{% endfor %}"),
    ("for_items_unpack", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for a, b in [[1, 2], (3, 4)] %}{{ a }}{{ b }}{% endfor %}"),
    ("for_filtered", "{% for x in xs if x > 1 %}{{ loop.index }}/{{ loop.length }}:{{ x }}{{ loop.last }} {% endfor %}"),
    ("for_over_dict_and_string", "{% for k in d %}{{ k }}{% endfor %}|{% for c in 'héy' %}{{ c }}.{% endfor %}"),
    ("for_scoping", "{% set x = 0 %}{% for i in xs %}{{ x }}{% set x = i %}{% endfor %}{{ x }}{% for i in xs %}{% set y = i %}{% endfor %}[{{ y }}]{{ i }}"),
    ("nested_loops", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }}|{% endfor %}"),
    ("break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
    ("if_elif_else", "{% for v in [0, 1, 2, 'a', [], none] %}{% if v == 1 %}one{% elif v == 2 %}two{% elif v %}truthy{% else %}falsy{% endif %},{% endfor %}"),
    ("set_and_tuple_set", "{% set a = 1 %}{% set b, c = 2, 3 %}{% set t = 4, 5 %}{{ a }}{{ b }}{{ c }}{{ t }}"),
    ("block_set", "{% set body %}\n  Hi {{ n }}\n{% endset %}[{{ body }}]{% set up | upper | trim %} x {% endset %}[{{ up }}]"),
    ("namespace", "{% set ns = namespace(count=0, found=none) %}{% for m in msgs %}{% if m.role == 'user' %}{% set ns.count = ns.count + 1 %}{% set ns.found = m.content %}{% endif %}{% endfor %}{{ ns.count }}{{ ns.found }}{{ ns.nope }}"),
    ("set_in_if_leaks", "{% if true %}{% set z = 5 %}{% endif %}{{ z }}"),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ greet('Al', punct='?') }} {{ greet() }}|{{ greet }}"),
    ("macro_varargs_kwargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k='v') }}"),
    ("macro_sees_later_globals", "{% macro m() %}{{ late }}{% endmacro %}{% set late = 'L' %}{{ m() }}"),
    ("call_block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold {{ n }}{% endcall %}"),
    ("call_block_with_args", "{% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) each(xs) %}[{{ x }}]{% endcall %}"),
    ("filter_block", "{% filter upper %}shout {{ s|trim }}{% endfilter %}"),
    ("with_block", "{% with a = 1, b = n %}{{ a }}{{ b }}{% endwith %}{{ a }}"),
    ("print_tag", "{% print 'p', 1 %}"),
    ("raise_exception", "{% if true %}{{ raise_exception('Bad role: ' ~ msgs[0].role) }}{% endif %}"),
    ("strftime_now", "{{ strftime_now('%Y-%m-%d %d %b %Y %A') }}"),
    ("range_and_dict", "{{ range(3)|list }}{{ range(1, 10, 3)|list }}{{ dict(a=1, b='x') }}"),
    # filters
    ("string_filters", "{{ s|trim }}|{{ s|upper }}|{{ s|lower }}|{{ 'hello wORLD-foo(bar'|title }}|{{ 'hELLO'|capitalize }}|{{ s|replace('l', 'L') }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 'xxhixx'|trim('x') }}"),
    ("length_and_count", "{{ xs|length }}{{ uni|length }}{{ d|count }}{{ ''|length }}"),
    ("string_filter", "{{ 1.0|string }}|{{ none|string }}|{{ d.a|string }}|{{ nope|string }}"),
    ("join", "{{ xs|join(', ') }}|{{ [1.0, none, 'x']|join }}|{{ msgs|join('/', attribute='role') }}"),
    ("first_last", "{{ xs|first }}{{ xs|last }}{{ 'abc'|first }}{{ 'abc'|last }}{{ d|first }}[{{ []|first }}]"),
    ("default", "{{ nope|default('a') }}{{ none|default('b') }}{{ ''|default('c', true) }}{{ 0|d('d', true) }}{{ 'e'|default('f') }}{{ nope|default }}"),
    ("list_and_items", "{{ 'abc'|list }}{{ d|list }}{% for k, v in d|items %}{{ k }}{% endfor %}"),
    ("selectattr_rejectattr", "{{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }}{{ msgs|rejectattr('role', 'eq', 'user')|list|length }}{{ msgs|selectattr('tool_calls', 'defined')|list|length }}{{ msgs|selectattr('tool_calls')|list|length }}"),
    ("select_reject", "{{ range(10)|select('odd')|list }}{{ range(10)|reject('even')|list }}{{ [0, 1, '', 'a', none]|select|list }}{{ xs|select('gt', 1)|list }}{{ words|reject('equalto', 'a')|list }}"),
    ("map", "{{ xs|map('string')|join('-') }}{{ words|map('upper')|list }}{{ msgs|map(attribute='nope', default='?')|list }}{{ [[1, 2], [3]]|map('length')|list }}"),
    ("unique_sort", "{{ words|unique|list }}{{ words|unique(case_sensitive=true)|list }}{{ words|sort }}{{ words|sort(case_sensitive=true) }}{{ xs|sort(reverse=true) }}{{ msgs|sort(attribute='role')|map(attribute='content')|list }}"),
    ("dictsort_min_max_sum", "{{ d|dictsort|map(attribute=0)|list }}{{ xs|min }}{{ xs|max }}{{ words|max }}{{ xs|sum }}{{ [1.5, 2]|sum(start=10) }}"),
    ("reverse", "{{ xs|reverse|list }}{{ 'héllo'|reverse }}{{ xs|select('odd')|reverse }}"),
    ("numeric_filters", "{{ '42'|int }}{{ '4.7'|int }}{{ 'x'|int(-1) }}{{ 3.9|int }}{{ '0x1A'|int(0, 16) }}{{ '1_000'|int }}|{{ '2.5'|float }}{{ 'bad'|float }}{{ 3|float }}|{{ -3|abs }}{{ -2.5|abs }}"),
    ("round", "{{ 2.5|round }}{{ 3.5|round }}{{ 2.675|round(2) }}{{ 3|round }}{{ 2.1|round(0, 'ceil') }}{{ 2.9|round(1, 'floor') }}{{ -0.5|round }}"),
    ("indent", "{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent('> ', blank=true) }}"),
    ("wordcount_attr", "{{ 'Hello big  world'|wordcount }}{{ d|attr('z') }}{{ d|attr('keys') is defined }}"),
    ("tojson", "{{ d|tojson }}|{{ msgs[0]|tojson(indent=2) }}|{{ uni|tojson }}|{{ [1.0, 1e20, -0.0, 3]|tojson }}|{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}|{{ 'x\\u0001\"\\\\'|tojson }}|{{ []|tojson(indent=4) }}{{ {}|tojson(indent=4) }}|{{ d|tojson(separators=(',', ':')) }}|{{ uni|tojson(true) }}"),
    ("tojson_nested_indent", "{{ {'a': [1, {'b': []}], 'c': {}}|tojson(indent=4) }}"),
    ("safe_and_tests", "{{ 'x'|safe }}{{ xs is sequence }}{{ d is mapping }}{{ s is string }}{{ n is number }}{{ f is float }}{{ n is integer }}{{ t is boolean }}{{ none_value is none }}{{ nope is undefined }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ t is true }}{{ t is false }}{{ t is sameas true }}"),
    ("more_tests", "{{ 'abc' is iterable }}{{ n is iterable }}{{ nope is iterable }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 2 is in xs }}{{ 1 is lt 2 }}{{ 'a' is ne 'b' }}{{ range is callable }}{{ 'upper' is filter }}{{ 'odd' is test }}{{ xs is not string }}{{ msgs[0] is mapping and msgs[0].role is equalto 'system' }}"),
    # Python methods
    ("str_methods", "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'xxhixx'.strip('x') }}|{{ s.upper() }}|{{ s.lower() }}|{{ 'hello world'.title() }}|{{ 'hELLO'.capitalize() }}|{{ s.replace('l', '_') }}"),
    ("str_split", "{{ 'a,b,,c'.split(',') }}{{ ' a  b '.split() }}{{ 'a b c'.split(' ', 1) }}{{ 'a b c'.rsplit(' ', 1) }}{{ 'l1\\nl2\\r\\nl3'.splitlines() }}"),
    ("str_predicates", "{{ s.startswith('  H') }}{{ s.endswith('d  ') }}{{ 'abc'.startswith(('x', 'a')) }}{{ '123'.isdigit() }}{{ 'abc'.isalpha() }}{{ 'a1'.isalnum() }}{{ '   '.isspace() }}"),
    ("str_find_count_join", "{{ 'hello'.find('l') }}{{ 'hello'.rfind('l') }}{{ 'hello'.find('z') }}{{ 'hello'.count('l') }}{{ '-'.join(['a', 'b']) }}{{ 'héllo'.find('l') }}"),
    ("str_format", "{{ '{} and {}'.format('a', 1) }}|{{ '{0}{1}{0}'.format('x', 'y') }}|{{ '{name}!'.format(name='Bo') }}|{{ '{{}}{!r}'.format('q') }}"),
    ("dict_methods", "{{ d.keys()|list }}{{ d.values()|list|length }}{{ d.get('z') }}{{ d.get('nope') }}{{ d.get('nope', 'dflt') }}{% for k, v in d.items() %}{{ k }}{% endfor %}"),
    ("list_methods", "{{ xs.index(2) }}{{ xs.count(3) }}"),
    # markupsafe.Markup semantics, which apply even with autoescape off
    ("markup_concat_escapes", "{{ 'Use '|safe + msgs[0].content + ' \\'<x>\\'\n'|safe + d|tojson }}"),
    ("markup_ops", "{{ ('<'|safe).join(['<', '>']) }}|{{ '%s&'|safe % '<' }}|{{ ('a<'|safe).replace('<', '>') }}|{{ ('x'|safe) * 2 + '&' }}|{{ 'x'|safe ~ '<' }}|{{ 'x'|safe|upper + '<' }}|{{ 'x'|safe|title + '<' }}|{{ ['x'|safe] }}"),
    ("escape_filters", "{{ '<a href=\"x\">\\'&'|e }}|{{ '<'|safe|e }}|{{ '<'|safe|forceescape }}|{{ 'x'|e is escaped }}|{{ 'x' is escaped }}"),
    # loop control inside inline blocks, and jinja2's for-else flag
    ("break_inside_set_block", "{% for x in xs %}{% set s %}{{ x }}{% if x == 1 %}{% break %}{% endif %}{% endset %}[{{ s }}]{% endfor %}"),
    ("for_else_after_break", "{% for x in xs %}{% break %}{% else %}ran-else{% endfor %}|{% for x in xs %}{% continue %}{% else %}ran-else{% endfor %}|{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% else %}no{% endfor %}"),
    ("printf_formatting", "{{ '%s=%d%%' % ('a', 3.7) }}|{{ '%5.1f|%-4s|%04d|%x|%#o|%e' % (3.14159, 'ab', 42, 255, 8, 12345.678) }}|{{ '%(a)s-%(b)r' % {'a': 1, 'b': 'x'} }}|{{ '%s, %s'|format('a', 2) }}"),
    ("backslash_newline_in_string", "{{ 'one \\\ntwo' }}"),
    ("str_padding", "{{ 'ab'.center(7, '*') }}|{{ 'abc'.center(6) }}|{{ 'ab'.ljust(4, '-') }}|{{ '-42'.zfill(6) }}|{{ 'x'|center(5) }}"),
    ("number_attributes", "{{ xs|map(attribute='real')|list }}{{ f.imag }}"),
    ("unsafe_method_error", "{{ xs.append(4) }}"),
    ("not_callable_error", "{{ s() }}"),
    ("divide_by_zero_error", "{{ 1 / 0 }}"),
    ("unpack_error", "{% for a, b in xs %}{% endfor %}"),
]


def constructs_golden(env, out_dir):
    cases = []
    for name, source in CONSTRUCTS:
        case = {"name": name, "template": source}
        case.update(render(env, source, dict(CONTEXT)))
        cases.append(case)
    write(out_dir / "jinja_constructs.json",
          {"generator": f"tools/make_chat_golden.py (jinja2 {jinja2.__version__})",
           "context": CONTEXT, "now_epoch_seconds": NOW_EPOCH_SECONDS, "cases": cases})


def write(path, data):
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path} ({len(data['cases'])} cases)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = pathlib.Path(__file__).resolve().parent.parent
    parser.add_argument("--out", type=pathlib.Path, default=root / "tests" / "golden" / "chat")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = make_env()
    template_goldens(env, args.out)
    constructs_golden(env, args.out)


if __name__ == "__main__":
    main()
