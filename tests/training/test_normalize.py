from duo.training.normalize import asr, number_words, ordinal_words


def test_numbers_as_words() -> None:
    assert number_words(0) == "zero"
    assert number_words(105) == "one hundred five"
    assert number_words(1_250_000) == "one million two hundred fifty thousand"
    assert ordinal_words(3) == "third" and ordinal_words(20) == "twentieth" and ordinal_words(21) == "twenty first"


def test_asr_form() -> None:
    assert asr("Set a timer for 10 minutes, please!") == "set a timer for ten minutes please"
    assert asr("Wake me at 7:30 on the 3rd.") == "wake me at seven thirty on the third"
    assert asr("It rose 12.5% in 1984") == "it rose twelve point five percent in nineteen eighty four"
    assert asr('He said "don\'t" - \'quote\'') == "he said don't quote"
