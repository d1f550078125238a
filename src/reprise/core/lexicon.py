"""Closed word lists the false-hit guards compare (English plus common Chinese markers).

General vocabulary only: negators, antonym pairs, closed classes whose members change
an answer (weekdays, am/pm, under/over, adults/children), stopwords and conversational
filler. Nothing here names an item of any benchmark; extend the lists for your domain.
"""

from __future__ import annotations

NEGATIONS: frozenset[str] = frozenset(
    {"not", "no", "never", "without", "cannot", "none", "nor", "neither", "nobody", "nothing",
     "不", "没", "別", "别", "非", "无", "無", "未", "勿", "莫"}
)

#: Antonym pairs: either member present in one prompt only vetoes the hit.
_ANTONYMS: tuple[tuple[str, str], ...] = (
    ("open", "closed"), ("open", "close"), ("on", "off"), ("add", "remove"), ("include", "exclude"),
    ("included", "excluded"), ("safe", "unsafe"), ("allowed", "banned"), ("allow", "ban"),
    ("permitted", "prohibited"), ("legal", "illegal"), ("eat", "avoid"), ("compulsory", "optional"),
    ("mandatory", "optional"), ("required", "optional"), ("enable", "disable"), ("start", "stop"),
    ("increase", "decrease"), ("raise", "lower"), ("upgrade", "downgrade"), ("buy", "sell"),
    ("import", "export"), ("upload", "download"), ("in", "out"), ("win", "lose"), ("pass", "fail"),
    ("accept", "reject"), ("approve", "decline"), ("join", "leave"), ("lock", "unlock"),
    ("subscribe", "unsubscribe"), ("refundable", "non-refundable"), ("taxable", "tax-free"),
    ("cheap", "expensive"), ("cheapest", "dearest"), ("fast", "slow"), ("hot", "cold"),
    ("high", "low"), ("early", "late"), ("earliest", "latest"), ("first", "last"),
    ("most", "least"), ("best", "worst"), ("maximum", "minimum"), ("max", "min"),
    ("more", "less"), ("more", "fewer"), ("above", "below"), ("under", "over"), ("before", "after"),
    ("pay", "refund"), ("send", "receive"), ("lend", "borrow"),
    ("deposit", "withdraw"), ("credit", "debit"), ("income", "expense"), ("gain", "loss"),
    ("profit", "loss"), ("arrive", "depart"), ("arrival", "departure"), ("inbound", "outbound"),
    ("import", "export"), ("upstairs", "downstairs"), ("internal", "external"), ("public", "private"),
    ("new", "old"), ("new", "used"), ("activate", "deactivate"), ("connect", "disconnect"),
    ("encrypt", "decrypt"), ("install", "uninstall"), ("hide", "show"), ("mute", "unmute"),
    ("freeze", "unfreeze"), ("block", "unblock"), ("pause", "resume"), ("cancel", "renew"),
    ("开", "关"), ("买", "卖"), ("上", "下"), ("前", "后"), ("多", "少"), ("大", "小"),
)
#: word -> the words that are its opposite.
OPPOSITES: dict[str, frozenset[str]] = {
    word: frozenset(b if a == word else a for a, b in _ANTONYMS if word in (a, b))
    for pair in _ANTONYMS for word in pair
}

#: Closed classes whose members change the answer (a different day, bound or audience).
SLOT_CLASSES: dict[str, frozenset[str]] = {
    name: frozenset(words.split())
    for name, words in {
        "day": "monday tuesday wednesday thursday friday saturday sunday weekday weekend today "
               "tomorrow yesterday tonight 今天 明天 昨天 周末 周一 周二 周三 周四 周五 周六 周日",
        "month": "january february march april june july august september october november december",
        "season": "spring summer autumn winter",
        "half-day": "am pm morning afternoon evening night midnight noon 早上 晚上 上午 下午",
        "period": "daily weekly monthly yearly quarterly hourly",
        "audience": "adult child baby teen teenager senior pensioner men women male female",
        "employment": "full-time part-time freelance self-employed employed unemployed student",
        "domain": "business personal domestic international commercial residential",
        "sequence": "next previous current",
        "account": "savings current joint single",
        "compass": "north south east west left right",
    }.items()
}
SLOT_OF: dict[str, str] = {word: name for name, words in SLOT_CLASSES.items() for word in words}

#: Synonyms folded together before comparison.
_FOLD: dict[str, str] = {
    "annual": "yearly", "annually": "yearly", "kids": "child", "children": "child", "kid": "child",
    "adults": "adult", "teens": "teen", "babies": "baby", "closing": "close", "opening": "open",
    "shut": "closed", "weekends": "weekend", "weekdays": "weekday", "cannot": "not", "can't": "not",
    "won't": "not", "nope": "no", "atm": "cashpoint", "quotation": "quote",
}

#: Spelled numbers ("one" is left out: it is mostly a pronoun, "quick one", "one of my").
NUMBER_WORDS: dict[str, str] = {
    word: str(i)
    for i, word in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen", "twenty")
    )
    if word != "one"
} | {"thirty": "30", "forty": "40", "fifty": "50", "hundred": "100", "thousand": "1000",
     "million": "1000000", "twice": "2", "dozen": "12",
     "一": "1", "二": "2", "两": "2", "三": "3", "四": "4", "五": "5", "六": "6", "七": "7",
     "八": "8", "九": "9", "十": "10", "百": "100", "千": "1000", "万": "10000"}

STOPWORDS: frozenset[str] = frozenset(
    """a an the of for to in on at by with from and or but is are was were be been being am do does
    did done have has had having i me my mine we us our you your yours it its this that these those
    there here what which who whom whose when where why how can could should would will shall may
    might must if so as than then any some much many about into out up down just also too very
    get got go going there's what's it's i'm i've i'd you're let let's please thanks thank
    的 了 吗 呢 是 我 你 他 她 它 们 在 有 和 与 吧 啊 个 么 什 怎 样 这 那""".split()
) - NEGATIONS


FILLER: frozenset[str] = frozenset(
    """uh um er erm okay ok so well hey hi hello quick question many thanks cheers sorry basically
    actually really just like kindly pls plz tell know want need wondering could possibly""".split()
)


def normalise_word(token: str) -> str:
    """Lower-case, fold apostrophes, known synonyms and a plural ``s``; ``n't`` becomes ``not``."""
    word = token.lower().replace("’", "'")
    if word.endswith("n't"):
        return "not"
    if word.endswith("'s"):
        word = word[:-2]
    word = _FOLD.get(word, word)
    if len(word) > 4 and word.endswith("s") and not word.endswith(("ss", "us", "is")) and word not in SLOT_OF:
        word = word[:-1]
    return word
