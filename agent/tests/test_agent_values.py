from omnitensor_agent.collectors import values


def test_numbers_with_and_without_units():
    assert values.number("100 %") == 100
    assert values.number("72.43 W") == 72.43
    assert values.number("59") == 59
    assert values.mib("81559 MiB") == 81559
    assert values.mib("81559") == 81559
    assert values.mib("2 GiB") == 2048


def test_every_not_a_value_spelling_is_none():
    for raw in (
        "[N/A]",
        "[Not Supported]",
        "[Requested functionality has been deprecated]",
        "[Function Not Found]",
        "[Unknown Error]",
        "N/A",
        "",
        "   ",
        None,
        "Enabled",
        "nan",
    ):
        assert values.number(raw) is None, raw
        assert values.mib(raw) is None, raw
    assert values.text_or_none("[N/A]") is None
    assert values.text_or_none(" 590.48.01 ") == "590.48.01"
