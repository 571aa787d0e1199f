"""Deterministic sample web archive for the offline demo.

:func:`generate_sample_archive` writes one per-record-gzipped ``.warc.gz`` per fictional site
(:data:`DEMO_SITES`), each starting with a ``warcinfo`` record and then holding that site's
captures in chronological order, 2019–2024, i.e. on both sides of the default 2023-01-01 cutoff.

Every capture is a ``request`` record (``WARC-Concurrent-To`` the capture) followed by either

* a ``response`` (HTTP/1.1 200 page, or a 301/302 redirect with a ``Location`` and a tiny body), or
* a ``revisit`` (identical-payload-digest profile, HTTP headers only) when the page is byte-identical
  to an earlier 200 response of the same URL; it carries that response's ``WARC-Payload-Digest``,
  ``WARC-Refers-To``, ``WARC-Refers-To-Target-URI`` and ``WARC-Refers-To-Date``.

Pages are built from a small embedded corpus mixed by seeded ``random.Random`` instances, so the
same ``seed`` and ``scale`` always give byte-identical files (record IDs and dates come from the
RNG too, never from the clock). Deliberate edge cases, whatever the seed:

* ``http://example.org/`` answers 301 → ``https://www.example.org/`` at every crawl of that site;
* news articles published before the Courier's 2021-03-01 URL migration live at
  ``/YYYY/MM/slug.html`` first; later captures of those old URLs are 302s to ``/articles/slug``;
* :data:`TRAP_URL` is captured on 2021-06-15 and again on 2024-02-20 with edited content while the
  page still says "14 June 2021" and sends a stale ``Last-Modified`` of 2021 — only the record
  date (2024) counts; plain 2023–2024 revisits of 2019–2022 responses occur as well;
* one library crawl straddles the cutoff: :data:`CUTOFF_EDGE_URL` is captured at exactly
  2023-01-01T00:00:00Z, the records just before it at 2022-12-31T23:59:5xZ.
"""

from __future__ import annotations

import html
import os
import random
import uuid
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import partial
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from .digests import sha1_base32

__all__ = [
    "CUTOFF_EDGE_URL",
    "DEMO_FIRST_YEAR",
    "DEMO_LAST_YEAR",
    "DEMO_SITES",
    "TRAP_URL",
    "generate_sample_archive",
]

#: Canonical hosts of the fictional sites, one WARC file each (``example.org`` only redirects to
#: ``www.example.org``).
DEMO_SITES: tuple[str, ...] = (
    "www.example.org",
    "news.example.com",
    "blog.example.net",
    "library.example.org",
    "example.net",
)
DEMO_FIRST_YEAR = 2019
DEMO_LAST_YEAR = 2024

#: A page captured in 2021 and again, changed but still dated 2021 on the page, in 2024.
TRAP_URL = "https://news.example.com/articles/millbrook-lido-to-reopen-after-three-year-closure"
#: Captured at exactly 2023-01-01T00:00:00Z by a crawl that began on 2022-12-31.
CUTOFF_EDGE_URL = "https://library.example.org/about"

_TRAP_FIRST = datetime(2021, 6, 15, 7, 42, 19, tzinfo=UTC)
_TRAP_SECOND = datetime(2024, 2, 20, 16, 5, 33, tzinfo=UTC)
_EDGE_CRAWL = datetime(2022, 12, 31, 23, 59, 51, tzinfo=UTC)
_EDGE_OFFSETS = (0, 6, 9, 13)  # home, hours, about (= 2023-01-01T00:00:00Z), an event
_NEWS_MIGRATION = datetime(2021, 3, 1, tzinfo=UTC)
_LEGACY_CRAWL = datetime(2021, 5, 3, 11, 27, 8, tzinfo=UTC)
_ARTICLES_FROM = datetime(2018, 6, 1, tzinfo=UTC)
_ARTICLES_TO = datetime(2024, 11, 30, tzinfo=UTC)

_USER_AGENT = "Mozilla/5.0 (compatible; MillbrookHeritageBot/2.1; +https://www.example.org/archiving)"
_REVISIT_PROFILE = "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest"
_HTML_TYPE = "text/html; charset=utf-8"

# ---------------------------------------------------------------------------------------------
# Embedded corpus
# ---------------------------------------------------------------------------------------------

_FILLERS: dict[str, tuple[str, ...]] = {
    "first": (
        "Margaret", "Tom", "Aisha", "Declan", "Priya", "Owen", "Ruth", "Samir", "Helen", "Gareth",
        "Jess", "Malcolm", "Nadia", "Colin", "Bea", "Frank", "Leonie", "Ravi", "Ellen", "Hugh",
    ),
    "last": (
        "Ashworth", "Okafor", "Pennington", "Lindqvist", "Marsh", "Doyle", "Hargreaves", "Patel",
        "Whitcombe", "Kowalski", "Brennan", "Sutherland", "Fairbairn", "Mendes", "Crowther", "Yates",
    ),
    "street": (
        "Mill Lane", "Station Road", "Fenwick Lane", "Church Street", "Orchard Way", "Ferry Road",
        "Quarry Hill", "Market Square", "Bridge Street", "Weaver's Row", "Tanner's Yard",
    ),
    "place": (
        "the Corn Exchange", "St Anne's church hall", "the old mill", "the riverside path",
        "Millbrook Park", "the leisure centre", "Harrow Green", "the community centre",
        "the bandstand", "Lower Fenn Meadows",
    ),
    "business": (
        "bakery", "hardware shop", "fish and chip shop", "bike repair shop", "post office",
        "greengrocer's", "café", "butcher's", "shoe repair shop", "bookshop",
    ),
    "weekday": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"),
    "month": (
        "January", "February", "March", "April", "May", "June", "July", "August", "September",
        "October", "November",
    ),
    "count": ("three", "four", "five", "six", "eight", "ten", "twelve", "fifteen", "twenty", "thirty"),
    "years": ("six", "eleven", "fifteen", "twenty", "twenty-five", "thirty", "forty"),
    "money": ("£2", "£3.50", "£5", "£8", "£12", "£35", "£42"),
    "votes": ("seven to two", "six to three", "five to four", "eight to one"),
    "busno": ("4", "7A", "12", "21", "X9"),
    "plotno": ("3", "11", "17", "24", "31", "38", "45", "52", "60"),
    "vegetable": (
        "courgettes", "runner beans", "rhubarb", "beetroot", "chard", "kale", "leeks",
        "squash", "broad beans", "tomatoes", "onions",
    ),
    "dish": (
        "lentil soup", "shepherd's pie", "lemon drizzle cake", "chicken and leek pie",
        "vegetable curry", "bread and butter pudding", "Welsh cakes", "fish pie",
        "mushroom risotto", "apple crumble", "chilli", "flapjack", "minestrone", "cheese scones",
    ),
    "ingredient": (
        "rice", "stale bread", "roast chicken", "cabbage", "bananas", "potatoes", "double cream",
        "parsnips", "red lentils", "cheddar", "spinach", "chickpeas",
    ),
    "loco": (
        "Class 08 shunter", "Jinty tank engine", "Class 37", "Black Five", "Pannier tank",
        "Class 47", "Hall class", "Deltic", "Class 20",
    ),
    "layout": (
        "Fenn Junction", "Ashby Road goods yard", "Lower Marsh sidings", "Quarry Halt",
        "Millbrook MPD", "Brindle Wharf",
    ),
    "town": ("Millbrook", "Ashby", "Harrowgate", "Fenton", "Kirkby Moor", "Wyeford"),
    "room": ("spare bedroom", "loft", "garden shed", "hallway", "garage"),
    "length": ("six feet", "eight feet", "four metres", "twelve feet", "two metres"),
    "topic": (
        "the history of the mills", "the railway in Millbrook", "wartime Millbrook",
        "the lost pubs of Church Street", "the 1968 floods",
    ),
}
_FILLERS["first2"] = _FILLERS["first"]
_FILLERS["last2"] = _FILLERS["last"]
_FILLERS["street2"] = _FILLERS["street"]

_COMMENTERS = (
    "Sue from Ashby", "Karen P", "dave_cooks", "Anjali", "Rob W", "Mum of three", "Ffion",
    "Pete (Fenton)", "Lottie", "Graham", "Noor", "Jan in the van",
)
_FORUM_USERS = (
    "shunter_dave", "GWRfan62", "coalyard_kate", "Bachmann_Bob", "n_gauge_nigel", "ValleyLines",
    "old_timer_73", "junction_jen", "tinplate_tom", "RiverFennBranch", "signalman_sid", "ecmlrich",
)


@dataclass(frozen=True)
class _Site:
    host: str
    name: str
    tagline: str
    kind: str  # allotment | news | recipes | library | forum
    section: str  # URL prefix of the articles
    section_label: str
    ip: str
    servers: tuple[tuple[int, str], ...]  # (from year, Server header)
    nav: tuple[tuple[str, str], ...]
    titles: tuple[str, ...]
    sentences: tuple[str, ...]
    about_title: str
    about: tuple[str, ...]
    notices: tuple[str, ...]
    authors: tuple[str, ...]
    addenda: tuple[str, ...]
    per_year: int  # articles per year at scale 1
    footer: str  # ``{now}`` is the capture year (a "dynamic" footer defeats deduplication)


_ALLOTMENT = _Site(
    host="www.example.org",
    name="Fenwick Lane Allotment Society",
    tagline="Sixty-two plots, one water trough and a great deal of opinion.",
    kind="allotment",
    section="/news/",
    section_label="Society news",
    ip="192.0.2.17",
    servers=((2019, "Apache/2.4.29 (Ubuntu)"), (2021, "Apache/2.4.41 (Ubuntu)"), (2023, "Apache/2.4.52 (Ubuntu)")),
    nav=(("/", "Home"), ("/news/", "News"), ("/about", "About the society")),
    titles=(
        "Water troughs back on from {month}",
        "Notes from the {month} committee meeting",
        "Plot inspections and a word about bindweed",
        "Seed swap at {place} this {weekday}",
        "Our {vegetable} glut and what to do with it",
        "New members: welcome, and a few house rules",
        "Shed break-ins: please lock up",
        "Best kept plot award goes to {first} {last}",
        "Working party to clear the bottom hedge",
        "Rainwater harvesting grant approved",
        "Autumn show results",
        "Manure delivery arriving {weekday}",
    ),
    sentences=(
        "The committee met on {weekday} evening in {place} and, for once, got through the whole agenda before nine.",
        "{first} {last} reminded everyone that hosepipes are not to be left running unattended, however tempting it "
        "is in August.",
        "If you have more {vegetable} than you can eat, the box by the gate is there for exactly that reason.",
        "We still have {count} half plots free at the top end, nearest the car park.",
        "Several people have asked about the compost bays; they will be turned over at the next working party.",
        "Thanks to everyone who brought tea, cake and a spare pair of hands.",
        "The lock on the main gate has been replaced and the new code has been sent round by text.",
        "Please keep the paths between plots clear, as the wheelbarrows simply will not fit otherwise.",
        "{first} has kindly offered to run a short session on saving {vegetable} seed for anyone who wants to learn.",
        "The frost caught a lot of us out this year, so it may be worth waiting until mid-May before planting out.",
        "Rents for the coming year stay at {money} for a half plot, which we think is still a bargain.",
        "A reminder that bonfires are only allowed from October to March, and never on a {weekday}.",
        "The slugs have been dreadful along the wet side of the site, and beer traps seem to be the only thing that "
        "helps.",
        "We are grateful to {first2} {last2} at the {business} on {street} for donating the timber for the new "
        "raised beds.",
        "Do come along even if you have never grown anything before; most of us started out the same way.",
        "The water trough by plot {plotno} is leaking again and has been reported to the council.",
        "There was a lively discussion about whether {vegetable} can ever be said to be a weed, which we will not be "
        "repeating here.",
        "Minutes of the last meeting were approved without changes.",
        "Keys for the tool store can be collected from {first} on plot {plotno}.",
        "Children are very welcome on site as long as they stay with a grown-up near the pond.",
        "The bees on plot {plotno} had a good year, and there may be a few jars of honey at the show.",
        "Anyone who borrowed the long-handled loppers, please return them to the shed.",
    ),
    about_title="About the society",
    about=(
        "Members pay a small annual rent and agree to keep at least three quarters of their plot in cultivation.",
        "The site has a shared shed, two water troughs, a composting area and a pond that is home to a great many "
        "frogs.",
        "We hold a seed swap in February, working parties through the year and a show every September.",
        "New members are allocated plots from the waiting list in the order they joined it.",
        "Everything is run by volunteers, so please be patient if we take a few days to reply.",
        "We try to garden without chemical sprays, and ask new members to do the same where they can.",
    ),
    notices=(
        "The waiting list is currently about {count} months long, but half plots come up more often.",
        "Next working party: first {weekday} of the month, 10am at the main gate. Bring gloves.",
        "Please remember to shut the gate behind you; the deer have found the brassicas again.",
        "Subscriptions are due by the end of {month}. Cash or cheque to {first} on plot {plotno}.",
        "The seed swap this year will be held at {place}. Bring your spares!",
        "Hosepipe ban: troughs and watering cans only until further notice.",
    ),
    authors=("the committee", "Ruth Marsh (secretary)", "Colin Yates (chair)"),
    addenda=(
        "Update: the date has moved to the following {weekday} because of the weather forecast.",
        "Update: thank you to everyone who came along, we filled {count} skips.",
        "Correction: the new gate code was sent out on {weekday}, not the day before as stated.",
    ),
    per_year=2,
    footer="© Fenwick Lane Allotment Society, c/o {place}, Millbrook. Registered charity no. 1090417.",
)

_NEWS = _Site(
    host="news.example.com",
    name="The Millbrook Courier",
    tagline="Local news for Millbrook and the Lower Fenn valley since 1987",
    kind="news",
    section="/articles/",
    section_label="Latest news",
    ip="198.51.100.42",
    servers=((2019, "nginx/1.14.2"), (2021, "nginx/1.18.0"), (2023, "nginx")),
    nav=(("/", "Home"), ("/articles/", "News"), ("/about", "About us")),
    titles=(
        "Council approves plans for new crossing on {street}",
        "{business} on {street} closes after {years} years",
        "Flood defences along the Fenn to be upgraded",
        "Residents object to parking changes near {place}",
        "Millbrook Rovers reach county cup semi-final",
        "Bus route {busno} to be cut back from {month}",
        "Volunteers clear {count} bags of litter from {place}",
        "New head teacher for Millbrook Primary",
        "Road closures planned for {street} resurfacing",
        "Farmers' market returns to {place}",
        "Plans for homes on former quarry site go back to committee",
        "Tributes paid to {first} {last}, former town crier",
    ),
    sentences=(
        "Councillors voted {votes} in favour at Tuesday's planning meeting, after more than an hour of debate.",
        "{first} {last}, who has lived on {street} for {years} years, said residents had been asking for the change "
        "for a long time.",
        "A spokesperson for the district council said the work was expected to take around {count} weeks, weather "
        "permitting.",
        "The decision was welcomed by local traders, although some questioned the timing.",
        "'We just want people to be able to get about safely,' {first} said. 'It has been a long time coming.'",
        "Police have asked anyone with information to call 101 and quote the incident number.",
        "The meeting heard that the original estimate had risen by almost a third since last year.",
        "Drivers are advised to use the diversion via {street2} while the road is closed.",
        "Organisers said the turnout had been better than they dared hope, despite the rain.",
        "The owners thanked customers for their loyalty in a handwritten note taped to the shop window.",
        "A public consultation will run until the end of {month}, with drop-in sessions at {place}.",
        "The Courier understands that at least {count} households have already written to object.",
        "Speaking after the vote, {first2} {last2} said the committee had 'listened carefully to both sides'.",
        "It is the first time in more than a decade that anything of the sort has happened in the town.",
        "The county council said it had no plans to reinstate the evening service.",
        "Residents on the Harrow Green estate said the changes would leave them without a direct bus to the hospital.",
        "The full report is available to read at the library and on the council's website.",
        "{first2} {last2}, chair of the Millbrook Civic Society, called the proposals 'a reasonable compromise'.",
        "Several readers contacted the Courier this week to share their memories.",
        "Further details are expected to be published before the next full council meeting in {month}.",
        "A petition calling for a rethink has gathered more than {count} hundred signatures.",
    ),
    about_title="About the Courier",
    about=(
        "The Millbrook Courier is an independent weekly newspaper covering Millbrook, Ashby and the villages of the "
        "Lower Fenn valley.",
        "We are a small team of reporters and a much larger team of volunteers who deliver the paper every Thursday.",
        "If you have a story, a photograph or a complaint, we would like to hear from you.",
        "Letters to the editor must include a name and address, although we will withhold them on request.",
        "We follow the Editors' Code of Practice; corrections are published on page two and online.",
        "Advertising helps keep the Courier free to read online, and we are grateful to every local business that "
        "supports us.",
    ),
    notices=(
        "The Courier is out every Thursday, with breaking news here throughout the week.",
        "Got a story? Email the newsdesk or call in at our office on {street}.",
        "Reader photo competition: this month's theme is '{place} at dusk'.",
        "Our offices will be closed on bank holiday {weekday}; the paper will be out as normal.",
    ),
    authors=("Sarah Ellingham", "Joe Brightwell", "Community Reporter", "Mark Oduya", "Lydia Frost"),
    addenda=(
        "This article was amended on {weekday} to correct the spelling of {first} {last}'s name.",
        "Update: the council has since confirmed that the work will begin in {month}.",
        "An earlier version of this article gave the wrong date for the meeting. It takes place on {weekday}.",
    ),
    per_year=5,
    footer="© {now} Lower Fenn Media Ltd. The Millbrook Courier, 14 {street}, Millbrook.",
)

_BLOG = _Site(
    host="blog.example.net",
    name="Second Helpings",
    tagline="Unfussy home cooking from a very small kitchen",
    kind="recipes",
    section="/recipes/",
    section_label="Recent recipes",
    ip="203.0.113.88",
    servers=((2019, "LiteSpeed"), (2022, "nginx")),
    nav=(("/", "Home"), ("/recipes/", "Recipes"), ("/about", "About me")),
    titles=(
        "{dish} (the one my nan made)",
        "A weeknight {dish}",
        "Slow-cooked {dish} for a cold {weekday}",
        "What to do with leftover {ingredient}",
        "{dish}, but quicker",
        "The {dish} I keep coming back to",
        "Batch-cooking {dish} for the freezer",
        "A very forgiving {dish}",
    ),
    sentences=(
        "I have been making this for about {years} years now and it has never once gone to waste.",
        "Start by softening the onion in a good glug of oil over a low heat; do not rush this bit.",
        "If you do not have {ingredient}, honestly, just leave it out and nobody will notice.",
        "My oven runs hot, so keep an eye on it after about twenty-five minutes.",
        "This freezes well for up to three months, which is the main reason I make a double batch.",
        "A few of you asked in the comments whether you can use {ingredient} instead, and the answer is yes.",
        "The kitchen in this flat is barely big enough to turn round in, so everything here is done in one pan where "
        "possible.",
        "Season it more than you think you need to, then taste it again before serving.",
        "My partner insists on eating this with a fried egg on top, which I refuse to endorse.",
        "Weigh the flour rather than using cups; it really does make a difference with this one.",
        "Leave it to rest for ten minutes before cutting, otherwise it will fall apart on the plate.",
        "The recipe below serves four, or two people and a very good lunch the next day.",
        "I picked up the {ingredient} at the market on {street} for next to nothing, which is what started all this.",
        "This is not a fancy recipe and it is not trying to be.",
        "If it looks a bit dry, add a splash of water from the kettle.",
        "Serve with crusty bread, a green salad, or straight out of the pan standing at the hob, no judgement.",
        "It was a {weekday} night, it was raining, and I had exactly four things in the fridge.",
        "My nan never wrote any of her recipes down, so this is my best guess from memory and a lot of trial and "
        "error.",
        "The leftovers are, if anything, even better the next day.",
        "You could add a pinch of chilli flakes here if you like a bit of warmth.",
    ),
    about_title="About me",
    about=(
        "I started this blog to keep track of the recipes I actually cook, rather than the ones I mean to cook.",
        "I live in Millbrook with my partner, a cat called Biscuit and a kitchen roughly the size of a phone box.",
        "Nothing here needs special equipment, and most things can be made with whatever is left at the end of the "
        "week.",
        "I am not a trained chef and I do not pretend to be; I just like feeding people.",
        "Comments are moderated, so please bear with me if yours takes a day or two to appear.",
        "All the photographs are my own, taken on my phone by the kitchen window.",
    ),
    notices=(
        "New recipes most Sundays, weather and toddlers permitting.",
        "Thank you for all your lovely comments on the soup recipes this month!",
        "I am taking a little break over the summer, back in September with plenty of crumble.",
        "If you make something from here, do let me know how it went in the comments.",
    ),
    authors=("Maggie",),
    addenda=(
        "Made this last night and it was lovely, thank you!",
        "Could I use {ingredient} instead? We can never get hold of it round here.",
        "My kids ate the lot. Will definitely be making this again.",
        "Turned out a bit runny for me, maybe my tins were bigger than yours?",
        "This has become a regular in our house, thank you for sharing it.",
        "I added a bit of smoked paprika and it worked really well.",
        "Reminds me of my grandmother's, she used to put a bay leaf in too.",
        "Doubled the recipe for a family party and there was nothing left.",
        "Worked perfectly with gluten-free flour, for anyone wondering.",
        "How long would you say it keeps in the fridge?",
        "Lovely blog, I have cooked my way through half of it now.",
    ),
    per_year=3,
    footer="© Maggie, Second Helpings. Recipes and photographs are mine, please ask before using them.",
)

_LIBRARY = _Site(
    host="library.example.org",
    name="Millbrook Public Library",
    tagline="Free to join, free to borrow, open to everyone",
    kind="library",
    section="/events/",
    section_label="What's on",
    ip="192.0.2.150",
    servers=((2019, "Microsoft-IIS/8.5"), (2022, "Microsoft-IIS/10.0")),
    nav=(("/", "Home"), ("/hours", "Opening hours"), ("/events/", "What's on"), ("/about", "About the library")),
    titles=(
        "Storytime for under-fives every {weekday}",
        "Author talk: {first} {last} on {topic}",
        "Family history drop-in",
        "Knit and natter returns",
        "Digital help sessions: bring your phone or tablet",
        "Local history exhibition: {place} through the years",
        "Book sale in aid of the Friends of Millbrook Library",
        "Half-term craft mornings",
        "Chess club for all ages",
        "Reading group: new members welcome",
    ),
    sentences=(
        "Sessions are free and there is no need to book, but spaces are limited so please arrive a few minutes early.",
        "Children must be accompanied by an adult at all times.",
        "{first} {last} has spent the last {years} years researching {topic}, and brings a box of old photographs to "
        "every talk.",
        "Tea and coffee will be available, kindly provided by the Friends of Millbrook Library.",
        "Our staff can help you set up email, video calls, online banking or the library app.",
        "All books in the sale are donated and priced between 50p and {money}.",
        "The meeting room is on the first floor and can be reached by the lift next to the returns desk.",
        "If you need large print or an accessible format, please ask at the counter.",
        "Please bring any old photographs or documents you would like us to scan.",
        "Last year more than {count} hundred children took part, reading an average of six books each.",
        "The group meets in the reading room on the first {weekday} of every month.",
        "Library membership is free for anyone who lives, works or studies in the district.",
        "Beginners are very welcome, and there are always spare needles and wool.",
        "You can reserve a place by phoning the library or asking at the front desk.",
        "This month the group is reading a novel chosen by {first}, who promises it has a happy ending.",
        "The exhibition includes maps, posters and photographs lent by families from across the town.",
        "Volunteers from the Millbrook Civic Society will be on hand to answer questions.",
        "Please let us know in advance if you have any access needs and we will do our best to help.",
    ),
    about_title="About the library",
    about=(
        "Millbrook Public Library opened in 1904 in a building paid for by public subscription, and has been on "
        "{street} ever since.",
        "We lend books, audiobooks, DVDs and, since last year, a small collection of tools and sewing machines.",
        "Free public computers and wi-fi are available whenever the library is open.",
        "The local studies room holds parish records, old newspapers and thousands of photographs of the town.",
        "The Friends of Millbrook Library raise money for the summer reading challenge and the author talks programme.",
        "Returns can be made through the book drop by the side door at any time.",
    ),
    notices=(
        "Renew your loans online or by phone, it only takes a minute.",
        "The summer reading challenge starts soon: sign up at the children's desk.",
        "Our book drop is open around the clock for returns.",
        "Volunteers wanted for the home library service; ask at the counter for details.",
    ),
    authors=("Library staff",),
    addenda=(
        "Update: this session is now fully booked. Please ask to be added to the waiting list.",
        "Update: because of building work the event will take place in {place} instead.",
        "Update: this event has been postponed. A new date will be announced soon.",
    ),
    per_year=3,
    footer="© {now} Millbrook Public Library, {street}, Millbrook. A service of the district council.",
)

_FORUM = _Site(
    host="example.net",
    name="The Signal Box",
    tagline="A friendly forum for railway modellers of all gauges",
    kind="forum",
    section="/forum/topic/",
    section_label="Active topics",
    ip="203.0.113.9",
    servers=((2019, "Apache"), (2021, "nginx/1.20.1")),
    nav=(("/", "Forum index"), ("/about", "About and forum rules")),
    titles=(
        "Weathering a {loco}: first attempt",
        "Which DCC decoder for an old {loco}?",
        "Layout update: {layout}",
        "Track cleaning: what actually works?",
        "Help! Points not switching after moving house",
        "Best glue for plastic kits?",
        "Exhibition report: {town} model railway show",
        "Ballasting tips for a beginner",
        "Shelf layout in the {room}",
        "Setrack or flexi-track for a first layout?",
    ),
    sentences=(
        "I have had the same problem with mine and it turned out to be dirty wheels, nothing more.",
        "Have you tried a drop of conductive grease on the point blades?",
        "I would go for the cheaper decoder to start with; you can always upgrade later.",
        "My layout is only {length} long, so I know all about squeezing things in.",
        "Photos attached, apologies for the poor lighting in the {room}.",
        "A fibreglass pencil works wonders, but do it outdoors because the fibres get everywhere.",
        "PVA diluted about fifty-fifty with a drop of washing-up liquid is what I use for ballast.",
        "I saw {layout} at the {town} show last year and it was even better in person.",
        "It is worth checking the back-to-back measurements before you do anything drastic.",
        "Not an expert, but it sounds like a short somewhere near the frog.",
        "The club meets on {weekday} evenings if anyone local wants to come and have a go.",
        "I have been at this hobby for {years} years and I still learn something new on here every week.",
        "Mine came from a swapmeet in a shoebox with no instructions, so any help gratefully received.",
        "The {loco} has been sitting in a drawer since I was a teenager and I would love to see it run again.",
        "I have ordered a couple of bits and will report back once they arrive.",
        "Any advice on where to start would be much appreciated.",
        "The wiring under the baseboard is, to put it kindly, a bit of a bird's nest.",
        "Weathering powders first, then a light dusting of matt varnish to seal it all in.",
    ),
    about_title="About and forum rules",
    about=(
        "The Signal Box started in a club room above a pub and moved online so that members could keep talking "
        "between meetings.",
        "Everyone is welcome, whatever the gauge, era or budget, and no question is too basic.",
        "Please be kind: we were all beginners once, and most of us still are at something.",
        "Adverts for your own products belong in the marketplace section, not in the main forum.",
        "Photographs should be your own, or posted with the owner's permission.",
        "The moderators are volunteers; if you spot a problem, use the report button rather than arguing in the "
        "thread.",
    ),
    notices=(
        "Welcome to the new members who joined this month, do say hello in the introductions thread.",
        "The forum will be down for maintenance on {weekday} evening for about an hour.",
        "Members' layout competition: entries close at the end of {month}.",
        "Reminder: the marketplace is for private sales only.",
    ),
    authors=_FORUM_USERS,
    addenda=(
        "Lovely work, the weathering is spot on.",
        "Thanks all, that has sorted it. Much appreciated.",
        "Welcome to the forum! Do post some photos when you get the chance.",
        "Brilliant, I might nick that idea for my own fiddle yard.",
        "Just a quick update: the {loco} now runs beautifully at slow speed.",
        "Same here. Cleaned the track with isopropyl and it has been fine ever since.",
        "I would not bother with the expensive stuff; a bit of patience does most of the work.",
        "Following this thread with interest, I have the same model waiting on the workbench.",
        "Have you checked the pick-ups? Mine were bent out of shape and barely touching the wheels.",
        "That is a cracking bit of modelling. How long did the buildings take you?",
        "I had exactly this on my old layout. A dropper wire to every length of rail cured it.",
        "Good advice above. I would only add: test everything before you ballast, not after.",
        "There is a very good article on this in one of the magazines from a couple of years back.",
        "Nice to see a {loco} getting some love, they are underrated.",
        "Bumping this in case anyone else has the same question, as I never did find an answer.",
    ),
    per_year=4,
    footer="The Signal Box forum. Posts are the views of their authors, not of the moderators.",
)

_SITES: tuple[_Site, ...] = (_ALLOTMENT, _NEWS, _BLOG, _LIBRARY, _FORUM)
assert tuple(site.host for site in _SITES) == DEMO_SITES

_RECIPE_INGREDIENTS = (
    "1 tbsp olive oil", "2 onions, finely chopped", "2 cloves of garlic, crushed",
    "400g tin of chopped tomatoes", "200g red lentils", "1 litre vegetable stock",
    "a handful of parsley", "150g plain flour", "100g cold butter, cubed", "75g caster sugar",
    "2 eggs", "1 tsp ground cumin", "salt and pepper", "2 carrots, diced", "1 leek, sliced",
    "300ml milk", "1 tsp baking powder", "a squeeze of lemon", "50g grated cheddar",
)
_RECIPE_STEPS = (
    "Heat the oil in a large pan and soften the onion for ten minutes.",
    "Add the garlic and spices and cook for another minute, stirring.",
    "Tip in everything else, bring to a simmer and leave it to bubble gently.",
    "Rub the butter into the flour until it looks like breadcrumbs.",
    "Stir in the sugar, then the eggs, and bring it together into a dough.",
    "Bake for 25 to 30 minutes, until golden and risen.",
    "Taste, season, and add a splash more water if it is too thick.",
    "Leave to cool for a few minutes before serving.",
)

# Library opening hours by period (from, heading, hours, note).
_HOURS: tuple[tuple[datetime, str, tuple[tuple[str, str], ...], str], ...] = (
    (
        datetime(2000, 1, 1, tzinfo=UTC),
        "Opening hours",
        (("Monday", "9:00 – 19:00"), ("Tuesday", "9:00 – 17:00"), ("Wednesday", "9:00 – 19:00"),
         ("Thursday", "9:00 – 17:00"), ("Friday", "9:00 – 17:00"), ("Saturday", "9:30 – 16:00"),
         ("Sunday", "Closed")),
        "The library is closed on bank holidays. The book drop by the side door is open at all times.",
    ),
    (
        datetime(2020, 3, 20, tzinfo=UTC),
        "Library building closed",
        (),
        "The library building is closed until further notice. You can still borrow e-books, "
        "e-audiobooks and e-magazines with your library card, and all loans have been extended automatically.",
    ),
    (
        datetime(2020, 7, 13, tzinfo=UTC),
        "Click and collect",
        (("Tuesday", "10:00 – 13:00"), ("Thursday", "10:00 – 13:00"), ("Saturday", "10:00 – 12:00")),
        "Browsing is not possible yet, but you can reserve up to ten items by phone or online and "
        "collect them from the front entrance. Please wait to be called forward.",
    ),
    (
        datetime(2021, 4, 12, tzinfo=UTC),
        "Reduced opening hours",
        (("Monday", "10:00 – 18:00"), ("Tuesday", "10:00 – 16:00"), ("Wednesday", "10:00 – 18:00"),
         ("Thursday", "10:00 – 16:00"), ("Friday", "10:00 – 16:00"), ("Saturday", "10:00 – 13:00"),
         ("Sunday", "Closed")),
        "We are pleased to welcome you back inside the library. Computer sessions are limited to one "
        "hour and should be booked in advance.",
    ),
    (
        datetime(2022, 9, 5, tzinfo=UTC),
        "Opening hours",
        (("Monday", "9:00 – 17:00"), ("Tuesday", "9:00 – 17:00"), ("Wednesday", "9:00 – 17:00"),
         ("Thursday", "9:00 – 20:00"), ("Friday", "9:00 – 17:00"), ("Saturday", "9:30 – 16:00"),
         ("Sunday", "Closed")),
        "From Monday 5 September we are open until 8pm on Thursdays, thanks to support from the "
        "Friends of Millbrook Library.",
    ),
    (
        datetime(2024, 1, 8, tzinfo=UTC),
        "Opening hours",
        (("Monday", "9:00 – 17:00"), ("Tuesday", "9:00 – 17:00"), ("Wednesday", "9:00 – 17:00"),
         ("Thursday", "9:00 – 20:00"), ("Friday", "9:00 – 17:00"), ("Saturday", "9:30 – 16:00"),
         ("Sunday", "11:00 – 15:00")),
        "We are trialling Sunday opening until the end of June. Let us know what you think at the front desk.",
    ),
)

_TRAP_TITLE = "Millbrook Lido to reopen after three-year closure"
_TRAP_PARAGRAPHS = (
    "Millbrook Lido will reopen to swimmers next month for the first time since the summer of 2018, "
    "the district council has confirmed.",
    "The open-air pool on Ferry Road closed after cracks were found in the main tank, and a campaign "
    "by the Friends of Millbrook Lido raised more than £60,000 towards the repairs.",
    "'There were times when we thought it would never happen,' said campaigner Helen Sutherland, who "
    "learned to swim at the lido in the 1970s. 'It is a proper community effort.'",
    "The pool will open from 7am on weekdays, with early-morning lane swimming and family sessions "
    "at weekends. Tickets will be sold on the door as well as online.",
)
_TRAP_UPDATE = (
    "Update: the lido closed again at the end of the 2023 season for further repairs to the pool "
    "lining. The council says it hopes to reopen in the spring, and season tickets will be extended."
)


# ---------------------------------------------------------------------------------------------
# Plan: articles, crawls
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Addendum:
    when: datetime
    who: str
    text: str


@dataclass
class _Article:
    title: str
    path: str
    legacy_path: str | None
    published: datetime
    author: str
    seed: str
    addenda: list[_Addendum] = field(default_factory=list)
    fixed: tuple[str, ...] = ()
    slots: dict[str, str] = field(default_factory=dict)
    summary: str = ""

    def url_at(self, host: str, when: datetime) -> str:
        if self.legacy_path is not None and when < _NEWS_MIGRATION:
            return f"https://{host}{self.legacy_path}"
        return f"https://{host}{self.path}"

    def visible_addenda(self, when: datetime) -> list[_Addendum]:
        return [a for a in self.addenda if a.when <= when]


@dataclass(frozen=True)
class _Crawl:
    start: datetime
    forced: tuple[str, ...] = ()  # article paths captured on top of the random choice
    offsets: tuple[int, ...] = ()  # fixed seconds after start per capture, else random
    via_legacy: bool = False  # fetch forced articles through their pre-migration URL (302)


class _Fill(dict[str, str]):
    """Slot values for ``str.format_map``; each slot is drawn once and then reused."""

    def __init__(self, rng: random.Random, fixed: Mapping[str, str] | None = None) -> None:
        super().__init__(fixed or {})
        self._rng = rng

    def __missing__(self, key: str) -> str:
        value = self._rng.choice(_FILLERS[key])
        self[key] = value
        return value


def _fill(template: str, slots: _Fill) -> str:
    return template.format_map(slots)


def _slugify(text: str) -> str:
    out: list[str] = []
    for ch in text.lower().replace("'", ""):
        out.append(ch if ch.isascii() and ch.isalnum() else "-")
    return "-".join(part for part in "".join(out).split("-") if part)


def _rand_between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randrange(span))


def _plan_articles(site: _Site, rng: random.Random, seed: int, scale: int) -> list[_Article]:
    years = (_ARTICLES_TO - _ARTICLES_FROM).days / 365.25
    count = max(4, round(site.per_year * scale * years))
    dates = sorted(_rand_between(rng, _ARTICLES_FROM, _ARTICLES_TO) for _ in range(count))
    used: dict[str, int] = {}
    articles: list[_Article] = []
    for number, published in enumerate(dates):
        slots = _Fill(rng, {"year": str(published.year)})
        title = _fill(rng.choice(site.titles), slots)
        title = title[0].upper() + title[1:]
        slug = _slugify(title)
        used[slug] = used.get(slug, 0) + 1
        if used[slug] > 1:
            slug = f"{slug}-{used[slug]}"
        if site.kind == "forum":
            slug = f"{1041 + number * 7}-{slug}"  # topic ids, as forum software does
        path = f"{site.section}{slug}"
        legacy = f"/{published:%Y/%m}/{slug}.html" if site.kind == "news" and published < _NEWS_MIGRATION else None
        article = _Article(
            title=title,
            path=path,
            legacy_path=legacy,
            published=published,
            author=rng.choice(site.authors),
            seed=f"{seed}:{site.host}:{path}:{rng.getrandbits(32)}",
            slots=dict(slots),
        )
        article.addenda = _plan_addenda(site, rng, published)
        articles.append(article)
    if site.kind == "news":
        trap = _Article(
            title=_TRAP_TITLE,
            path=TRAP_URL.removeprefix(f"https://{site.host}"),
            legacy_path=None,  # published after the URL migration
            published=datetime(2021, 6, 14, 10, 30, tzinfo=UTC),
            author="Sarah Ellingham",
            seed=f"{seed}:{site.host}:trap",
            addenda=[_Addendum(datetime(2023, 11, 2, 9, 12, tzinfo=UTC), "", _TRAP_UPDATE)],
            fixed=_TRAP_PARAGRAPHS,
        )
        articles.append(trap)
        articles.sort(key=lambda a: a.published)
    return articles


def _plan_addenda(site: _Site, rng: random.Random, published: datetime) -> list[_Addendum]:
    if site.kind in ("forum", "recipes"):
        n = rng.randint(1, 8) if site.kind == "forum" else rng.randint(0, 4)
        pool: tuple[str, ...] = _FORUM_USERS if site.kind == "forum" else _COMMENTERS
        mean_days = 10.0 if site.kind == "forum" else 45.0
    else:
        chance = {"news": 0.2, "library": 0.25, "allotment": 0.12}[site.kind]
        n = 1 if rng.random() < chance else 0
        pool = ("",)  # news updates, corrections etc. are unsigned
        mean_days = 20.0
    out: list[_Addendum] = []
    when = published
    for template in rng.sample(site.addenda, min(n, len(site.addenda))):
        when = when + timedelta(seconds=60 + int(rng.expovariate(1.0 / mean_days) * 86400))
        text = html.escape(_fill(template, _Fill(rng)), quote=False)
        out.append(_Addendum(when, rng.choice(pool), text))
    return out


def _plan_crawls(site: _Site, rng: random.Random, scale: int, articles: Sequence[_Article]) -> list[_Crawl]:
    crawls: list[_Crawl] = []
    for year in range(DEMO_FIRST_YEAR, DEMO_LAST_YEAR + 1):
        days = (datetime(year + 1, 1, 1, tzinfo=UTC) - datetime(year, 1, 1, tzinfo=UTC)).days
        for _ in range(2 * scale):
            start = datetime(year, 1, 1, tzinfo=UTC) + timedelta(
                days=rng.randrange(days), seconds=rng.randrange(86400 - 3600)
            )
            crawls.append(_Crawl(start))
    trap_path = TRAP_URL.removeprefix(f"https://{site.host}")
    if site.kind == "news":
        crawls.append(_Crawl(_TRAP_FIRST, forced=(trap_path,)))
        crawls.append(_Crawl(_TRAP_SECOND, forced=(trap_path,)))
        legacy = [a for a in articles if a.legacy_path is not None]
        if legacy:  # always, in practice: ~15 articles predate the migration
            crawls.append(_Crawl(_LEGACY_CRAWL, forced=(legacy[-1].path,), via_legacy=True))
    if site.kind == "library":
        crawls.append(_Crawl(_EDGE_CRAWL, offsets=_EDGE_OFFSETS))
    crawls.sort(key=lambda c: c.start)
    return crawls


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _long_date(when: datetime) -> str:
    return f"{when.day} {when:%B %Y}"


def _short_date(when: datetime) -> str:
    return f"{when.day} {when:%b %Y}, {when:%H:%M}"


def _server_at(site: _Site, when: datetime) -> str:
    server = site.servers[0][1]
    for year, name in site.servers:
        if when.year >= year:
            server = name
    return server


def _page(site: _Site, when: datetime, title: str, description: str, main: str) -> bytes:
    nav = "".join(f'<li><a href="{href}">{_esc(label)}</a></li>' for href, label in site.nav)
    footer = _esc(_fill(site.footer, _Fill(random.Random(site.host), {"now": str(when.year)})))
    doc_title = site.name if title == site.name else f"{title} | {site.name}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en-GB">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_esc(doc_title)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="description" content="{html.escape(description)}">\n'
        '<link rel="stylesheet" href="/static/site.css">\n</head>\n<body>\n'
        f'<header class="site-header">\n<p class="brand"><a href="/">{_esc(site.name)}</a></p>\n'
        f'<p class="tagline">{_esc(site.tagline)}</p>\n<nav>\n<ul>{nav}</ul>\n</nav>\n</header>\n'
        f"<main>\n{main}</main>\n"
        f"<footer>\n<p>{footer}</p>\n</footer>\n</body>\n</html>\n"
    ).encode()


def _paragraphs(rng: random.Random, pool: Sequence[str], slots: _Fill, count: int, per: tuple[int, int]) -> list[str]:
    """Up to ``count`` paragraphs of ``per`` sentences each, no sentence used twice."""
    order = list(pool)
    rng.shuffle(order)
    paragraphs: list[str] = []
    for _ in range(count):
        take = rng.randint(*per)
        chunk, order = order[:take], order[take:]
        if not chunk:
            break
        paragraphs.append(" ".join(_fill(sentence, slots) for sentence in chunk))
    return paragraphs


def _article_body(site: _Site, art: _Article) -> list[str]:
    """The unchanging paragraphs of an article (plain text)."""
    if art.fixed:
        return list(art.fixed)
    rng = random.Random(art.seed)
    slots = _Fill(rng, art.slots)  # the body talks about the same people and places as the title
    if site.kind == "forum":
        return _paragraphs(rng, site.sentences, slots, rng.randint(2, 3), (2, 3))
    return _paragraphs(rng, site.sentences, slots, rng.randint(4, 6), (2, 4))


def _summary(site: _Site, art: _Article) -> str:
    if not art.summary:
        first = _article_body(site, art)[0]
        cut = first.find(". ", first.find(". ") + 2)  # two sentences at most
        art.summary = first if cut < 0 else first[: cut + 1]
    return art.summary


def _render_article(site: _Site, art: _Article, when: datetime) -> bytes:
    body = _article_body(site, art)
    shown = art.visible_addenda(when)
    parts: list[str] = []
    if site.kind == "forum":
        parts.append(f'<article class="topic">\n<h1>{_esc(art.title)}</h1>\n')
        posts = [(art.author, art.published, "".join(f"<p>{_esc(p)}</p>" for p in body))]
        posts += [(a.who, a.when, f"<p>{a.text}</p>") for a in shown]
        for number, (who, posted, text) in enumerate(posts, start=1):
            parts.append(
                f'<div class="post" id="p{number}">\n<p class="meta">Posted by <b>{_esc(who)}</b> '
                f'on <time datetime="{posted:%Y-%m-%dT%H:%M}Z">{_short_date(posted)}</time></p>\n{text}\n</div>\n'
            )
        noun = "reply" if len(posts) == 2 else "replies"
        parts.append(f'<p class="replies">{len(posts) - 1} {noun}</p>\n</article>\n')
        return _page(site, when, art.title, _summary(site, art), "".join(parts))

    parts.append(f"<article>\n<h1>{_esc(art.title)}</h1>\n")
    label = "Posted" if site.kind in ("recipes", "library", "allotment") else "Published"
    parts.append(
        f'<p class="byline">By {_esc(art.author)} &middot; {label} '
        f'<time datetime="{art.published:%Y-%m-%d}">{_long_date(art.published)}</time></p>\n'
    )
    parts.extend(f"<p>{_esc(p)}</p>\n" for p in body)
    if site.kind == "recipes":
        rng = random.Random(art.seed + ":recipe")
        items = rng.sample(_RECIPE_INGREDIENTS, rng.randint(5, 9))
        steps = [_RECIPE_STEPS[i] for i in sorted(rng.sample(range(len(_RECIPE_STEPS)), rng.randint(3, 5)))]
        parts.append("<h2>Ingredients</h2>\n<ul>\n" + "".join(f"<li>{_esc(i)}</li>\n" for i in items) + "</ul>\n")
        parts.append("<h2>Method</h2>\n<ol>\n" + "".join(f"<li>{_esc(s)}</li>\n" for s in steps) + "</ol>\n")
        if shown:
            noun = "comment" if len(shown) == 1 else "comments"
            parts.append(f'<section class="comments">\n<h2>{len(shown)} {noun}</h2>\n')
            for a in shown:
                parts.append(
                    f'<div class="comment"><p class="meta">{_esc(a.who)} &middot; {_long_date(a.when)}</p>'
                    f"<p>{a.text}</p></div>\n"
                )
            parts.append("</section>\n")
    else:
        parts.extend(f'<p class="update"><em>{a.text}</em></p>\n' for a in shown)
    parts.append("</article>\n")
    return _page(site, when, art.title, _summary(site, art), "".join(parts))


def _hours_at(when: datetime) -> tuple[str, tuple[tuple[str, str], ...], str]:
    current = _HOURS[0]
    for period in _HOURS:
        if period[0] <= when:
            current = period
    return current[1], current[2], current[3]


def _render_hours(site: _Site, when: datetime) -> bytes:
    heading, rows, note = _hours_at(when)
    table = ""
    if rows:
        table = (
            "<table class=\"hours\">\n"
            + "".join(f"<tr><th>{day}</th><td>{_esc(time)}</td></tr>\n" for day, time in rows)
            + "</table>\n"
        )
    main = (
        f"<article>\n<h1>{_esc(heading)}</h1>\n<p>{_esc(note)}</p>\n{table}"
        "<p>Millbrook Public Library, Church Street, Millbrook. Telephone 01632 960 418.</p>\n"
        "<p>Staff are happy to help you find a book, join the library or use the computers. "
        "The building has step-free access from the car park and an accessible toilet on the ground floor.</p>\n"
        "</article>\n"
    )
    return _page(site, when, heading, note, main)


def _render_about(site: _Site, seed: int, version: int, when: datetime) -> bytes:
    rng = random.Random(f"{seed}:{site.host}:about:{version}")
    slots = _Fill(rng)
    paras = _paragraphs(rng, site.about, slots, 3, (1, 3))
    text = "".join(f"<p>{_esc(p)}</p>\n" for p in paras)
    main = f"<article>\n<h1>{_esc(site.about_title)}</h1>\n{text}</article>\n"
    return _page(site, when, site.about_title, paras[0].split(". ")[0].rstrip(".") + ".", main)


def _render_home(site: _Site, seed: int, when: datetime, latest: Sequence[_Article]) -> bytes:
    half = 0 if when.month <= 6 else 1
    rng = random.Random(f"{seed}:{site.host}:notice:{when.year}:{half}")
    notices = [_fill(n, _Fill(rng)) for n in rng.sample(site.notices, 2)]
    parts = [f'<article class="home">\n<h1>{_esc(site.name)}</h1>\n']
    parts.extend(f'<p class="notice">{_esc(n)}</p>\n' for n in notices)
    if site.kind == "library":
        heading, _rows, note = _hours_at(when)
        parts.append(f'<section class="today">\n<h2>{_esc(heading)}</h2>\n<p>{_esc(note)}</p>\n'
                     '<p><a href="/hours">Full opening hours</a></p>\n</section>\n')
    parts.append(f'<section class="latest">\n<h2>{_esc(site.section_label)}</h2>\n<ul>\n')
    for art in latest:
        href = art.url_at(site.host, when).removeprefix(f"https://{site.host}")
        if site.kind == "forum":
            shown = art.visible_addenda(when)
            last = shown[-1] if shown else None
            noun = "reply" if len(shown) == 1 else "replies"
            extra = f"{len(shown)} {noun} &middot; last post by {_esc(last.who if last else art.author)}"
            parts.append(f'<li><a href="{href}">{_esc(art.title)}</a><p class="meta">{extra}</p></li>\n')
        else:
            parts.append(
                f'<li><a href="{href}">{_esc(art.title)}</a> '
                f'<time datetime="{art.published:%Y-%m-%d}">{_long_date(art.published)}</time>\n'
                f"<p>{_esc(_summary(site, art))}</p></li>\n"
            )
    parts.append("</ul>\n</section>\n</article>\n")
    return _page(site, when, site.name, site.tagline, "".join(parts))


def _redirect_body(status: int, location: str) -> bytes:
    reason = "Moved Permanently" if status == 301 else "Found"
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{status} {reason}</title></head>"
        f"<body><h1>{reason}</h1><p>The document has moved <a href=\"{html.escape(location)}\">here</a>.</p>"
        "</body></html>\n"
    ).encode()


# ---------------------------------------------------------------------------------------------
# WARC writing
# ---------------------------------------------------------------------------------------------


def _warc_date(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


_REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found"}


class _SiteWriter:
    """Writes the captures of one site into one open ``.warc.gz``, deduplicating by payload digest."""

    def __init__(self, out: BinaryIO, site: _Site, rng: random.Random) -> None:
        self.writer = WARCWriter(out, gzip=True)
        self.site = site
        self.rng = rng
        self.warcinfo_id = ""
        # url -> payload digest -> (record id, WARC-Date) of the first 200 response with it
        self.originals: dict[str, dict[str, tuple[str, str]]] = {}

    def new_id(self) -> str:
        return f"<urn:uuid:{uuid.UUID(int=self.rng.getrandbits(128), version=4)}>"

    def warcinfo(self, filename: str, when: datetime, fields: Sequence[tuple[str, str]]) -> None:
        self.warcinfo_id = self.new_id()
        data = "".join(f"{name}: {value}\r\n" for name, value in fields).encode()
        headers = StatusAndHeaders(
            "",
            [
                ("WARC-Type", "warcinfo"),
                ("WARC-Record-ID", self.warcinfo_id),
                ("WARC-Date", _warc_date(when)),
                ("WARC-Filename", filename),
            ],
            protocol="WARC/1.0",
        )
        record = self.writer.create_warc_record(
            "", "warcinfo", payload=BytesIO(data), length=len(data), warc_headers=headers,
            warc_content_type="application/warc-fields",
        )
        self.writer.write_record(record)

    def capture(
        self,
        url: str,
        when: datetime,
        body: bytes,
        *,
        status: int = 200,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> str:
        """Write request + response (or revisit); return the type of the second record."""
        date = _warc_date(when)
        response_id = self.new_id()
        request_id = self.new_id()
        host = url.split("/", 3)[2]
        path = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"
        request_headers = StatusAndHeaders(
            f"GET {path} HTTP/1.1",
            [
                ("Host", host),
                ("User-Agent", _USER_AGENT),
                ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                ("Accept-Language", "en-GB,en;q=0.8"),
                ("Connection", "close"),
            ],
            is_http_request=True,
        )
        request = self.writer.create_warc_record(
            url, "request", payload=BytesIO(b""), length=0, http_headers=request_headers,
            warc_headers_dict={
                "WARC-Type": "request",
                "WARC-Record-ID": request_id,
                "WARC-Date": date,
                "WARC-Target-URI": url,
                "WARC-Warcinfo-ID": self.warcinfo_id,
                "WARC-Concurrent-To": response_id,
            },
        )
        http_headers = StatusAndHeaders(
            f"{status} {_REASONS[status]}",
            [
                ("Date", _http_date(when)),
                ("Server", _server_at(self.site, when)),
                ("Content-Type", _HTML_TYPE),
                ("Content-Length", str(len(body))),
                *extra_headers,
                ("Connection", "close"),
            ],
            protocol="HTTP/1.1",
        )
        warc_headers = {
            "WARC-Type": "response",
            "WARC-Record-ID": response_id,
            "WARC-Date": date,
            "WARC-Target-URI": url,
            "WARC-IP-Address": self.site.ip,
            "WARC-Warcinfo-ID": self.warcinfo_id,
        }
        digest = sha1_base32(body)
        seen = self.originals.setdefault(url, {})
        original = seen.get(digest) if status == 200 else None
        if original is not None:
            warc_headers["WARC-Type"] = "revisit"
            warc_headers["WARC-Refers-To"] = original[0]
            record = self.writer.create_revisit_record(
                url, digest, url, original[1], http_headers=http_headers, warc_headers_dict=warc_headers
            )
            record.rec_headers.replace_header("WARC-Profile", _REVISIT_PROFILE)
            kind = "revisit"
        else:
            record = self.writer.create_warc_record(
                url, "response", payload=BytesIO(body), length=len(body), http_headers=http_headers,
                warc_headers_dict=warc_headers,
            )
            if record.rec_headers.get_header("WARC-Payload-Digest") != digest:  # pragma: no cover
                raise RuntimeError(f"payload digest mismatch writing {url}")
            if status == 200:
                seen[digest] = (response_id, date)
            kind = "response"
        self.writer.write_record(request)
        self.writer.write_record(record)
        return kind


@dataclass
class _Job:
    url: str
    render: Callable[[datetime], bytes]
    status: int = 200
    extra: tuple[tuple[str, str], ...] = ()


def _redirect_job(url: str, status: int, location: str) -> _Job:
    body = _redirect_body(status, location)
    return _Job(url, lambda _when: body, status, (("Location", location),))


def _choose_articles(rng: random.Random, published: Sequence[_Article], how_many: int) -> list[_Article]:
    chosen: list[_Article] = []
    for _ in range(how_many):
        if not published:
            break
        if rng.random() < 0.6:
            pick = rng.choice(published[-3:])
        else:
            pick = rng.choice(published)
        if pick not in chosen:
            chosen.append(pick)
    return chosen


def _write_site(out: BinaryIO, site: _Site, filename: str, rng: random.Random, seed: int, scale: int) -> None:
    articles = _plan_articles(site, rng, seed, scale)
    pub_times = [a.published for a in articles]
    by_path = {a.path: a for a in articles}
    crawls = _plan_crawls(site, rng, scale, articles)
    about_changes = sorted(
        [
            _rand_between(rng, datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 12, 31, tzinfo=UTC)),
            _rand_between(rng, datetime(2022, 6, 1, tzinfo=UTC), datetime(2024, 6, 30, tzinfo=UTC)),
        ]
    )

    writer = _SiteWriter(out, site, rng)
    writer.warcinfo(
        filename,
        crawls[0].start - timedelta(seconds=rng.randint(5, 40)),
        [
            ("software", "archivekeeper demo generator (warcio)"),
            ("format", "WARC File Format 1.0"),
            ("conformsTo", "http://bibnum.bnf.fr/WARC/WARC_ISO_28500_version1_latestdraft.pdf"),
            ("isPartOf", "archivekeeper-demo"),
            ("description", f"Synthetic captures of the fictional site {site.name} ({site.host}), "
                            f"{DEMO_FIRST_YEAR}-{DEMO_LAST_YEAR}; seed={seed} scale={scale}"),
            ("operator", "Millbrook Heritage Web Archive (fictional)"),
            ("http-header-user-agent", _USER_AGENT),
            ("robots", "obey"),
        ],
    )
    base = f"https://{site.host}"

    for crawl in crawls:
        when = crawl.start
        published = articles[: bisect_right(pub_times, when)]
        latest = published[-6:][::-1]
        jobs: list[_Job] = []
        if site.kind == "allotment":
            jobs.append(_redirect_job("http://example.org/", 301, f"{base}/"))
        jobs.append(_Job(f"{base}/", partial(_render_home, site, seed, latest=latest)))
        if site.kind == "library":
            jobs.append(_Job(f"{base}/hours", partial(_render_hours, site)))
        if crawl.offsets or rng.random() < 0.5:
            version = bisect_right(about_changes, when)
            jobs.append(_Job(f"{base}/about", partial(_render_about, site, seed, version)))
        forced = [by_path[p] for p in crawl.forced]
        wanted = (rng.random() < 0.6) if site.kind == "library" else 1 + (rng.random() < 0.4)
        if crawl.offsets:
            wanted = max(wanted, 1)
        for art in forced:
            jobs.extend(_article_jobs(site, art, when, rng, via_legacy=crawl.via_legacy))
        for art in _choose_articles(rng, published, wanted):
            if art not in forced:
                jobs.extend(_article_jobs(site, art, when, rng))

        offsets = crawl.offsets
        for index, job in enumerate(jobs):
            if offsets and index < len(offsets):
                at = crawl.start + timedelta(seconds=offsets[index])
            elif index:
                at = when + timedelta(seconds=rng.randint(1, 7))
            else:
                at = when
            when = at
            writer.capture(job.url, at, job.render(at), status=job.status, extra_headers=job.extra)


def _article_jobs(
    site: _Site, art: _Article, when: datetime, rng: random.Random, *, via_legacy: bool = False
) -> list[_Job]:
    base = f"https://{site.host}"
    modified = (("Last-Modified", _http_date(art.published)),)  # stale after edits, as CMSs often do
    page = _Job(art.url_at(site.host, when), partial(_render_article, site, art), 200, modified)
    if art.legacy_path is not None and when >= _NEWS_MIGRATION and (via_legacy or rng.random() < 0.4):
        return [_redirect_job(f"{base}{art.legacy_path}", 302, f"{base}{art.path}"), page]
    return [page]


def generate_sample_archive(dest: Path, *, seed: int = 2023, scale: int = 1) -> list[Path]:
    """Write a deterministic sample web archive into dest; return the WARC paths written.

    One ``ak-demo-<host>.warc.gz`` per entry of :data:`DEMO_SITES`, in that order. Files are
    streamed to ``<name>.part`` and renamed into place; existing files of the same name are
    replaced. ``scale`` multiplies the number of articles and crawls (scale=1: about 200 captures,
    a few hundred KB in all).
    """
    if scale < 1:
        raise ValueError(f"scale must be at least 1, got {scale}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    written: list[Path] = []
    for site in _SITES:
        filename = f"ak-demo-{site.host}.warc.gz"
        final = dest / filename
        partial = dest / (filename + ".part")
        try:
            with open(partial, "wb") as out:
                _write_site(out, site, filename, rng, seed, scale)
            os.replace(partial, final)
        finally:
            if partial.exists():
                partial.unlink()
        written.append(final)
    return written
