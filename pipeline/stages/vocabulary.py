"""The offline writer's phrase book: titles, headings and sentences per language.

Everything here is topic-neutral; ``{topic}`` (as given) and ``{Topic}`` (first
letter capitalised) are the only slots, plus ``{link}`` in link sentences, where
the writer places the one backlink. Templates are kept as one line each so that
adding a language is a matter of copying a block and translating it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Vocabulary:
    """The templates the offline writer draws from for one language."""

    name: str
    titles: tuple[str, ...]
    headings: tuple[str, ...]
    sentences: tuple[str, ...]
    link_sentences: tuple[str, ...]


def _lines(block: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in block.strip().splitlines() if line.strip())


_ENGLISH = Vocabulary(
    name="English",
    titles=_lines("""
{Topic}: a practical guide
A clear introduction to {topic}
What to know about {topic}
Getting started with {topic}
{Topic} explained step by step
Making sense of {topic}
"""),
    headings=_lines("""
Why it matters
Where to begin
Common mistakes to avoid
Planning and budgeting
Learning from others
Measuring progress
Choosing the right approach
Looking ahead
"""),
    sentences=_lines("""
{Topic} is one of those subjects that looks simple from a distance and grows richer up close.
Most people first meet {topic} through a practical problem rather than out of pure curiosity.
A good starting point is to separate what you already know from what you merely assume.
Small, regular steps usually beat one large effort that is never repeated.
It helps to write down a clear goal before comparing options or collecting advice.
People with long experience of {topic} tend to agree on the basics and argue about the details.
The details matter, but only once the fundamentals are in place and well understood.
Many common mistakes come from copying a method without understanding why it works.
When in doubt, test an idea on a small scale before committing more time or money to it.
Good sources explain their reasoning, admit uncertainty and show where their numbers come from.
Costs in {topic} are easy to underestimate, especially the time spent on upkeep later on.
A simple checklist can prevent the most frequent oversights without slowing anyone down.
It is worth asking people who have done it before what they would change in hindsight.
Context changes everything, so advice that works in one setting may fail in another.
Over time, patterns appear that make later decisions about {topic} much easier.
Keeping short notes on what worked and what did not turns experience into knowledge.
There is rarely a single right answer, but there are plenty of clearly wrong ones.
Quality usually shows in the small things that nobody notices until they are missing.
Planning ahead leaves room to adjust when circumstances change, as they usually do.
A realistic budget includes a margin for surprises instead of assuming everything goes well.
The newest option is not always the best, and the cheapest is seldom the cheapest in the end.
Interest in {topic} has grown steadily, and the amount of available guidance has grown with it.
That abundance is useful, yet it also makes it harder to tell solid advice from noise.
Reliable guidance tends to be specific, modest in its claims and open about its limits.
Beginners benefit most from a few clear rules they can follow consistently.
Later, those rules can be relaxed as judgement and confidence develop.
Safety and sustainability deserve attention from the very first step, not as an afterthought.
Talking to others who care about {topic} is one of the fastest ways to learn.
Local clubs, forums and courses often share lessons that are hard to find anywhere else.
Even a short conversation can save hours of trial and error.
Measuring results, even roughly, shows whether an approach is actually paying off.
If it is not, changing one thing at a time makes the cause much easier to find.
Patience is underrated: many improvements in {topic} only become visible after some weeks.
In the end, the best approach is the one that fits your situation and that you will keep up.
With a clear plan and some curiosity, {topic} becomes far less daunting than it first seems.
Each small success builds the confidence needed for the next, slightly larger step.
Clear priorities make it easier to say no to distractions that look urgent but matter little.
Tools help, but they rarely replace a sound method and a bit of practice.
Most setbacks are temporary, and many of them teach more than an easy success would.
A second opinion is cheap compared with the cost of a mistake that could have been avoided.
Those who enjoy {topic} often say that the learning itself is part of the reward.
Seasons and local conditions can shift what makes sense from one month to the next.
Information from manufacturers and public bodies is often drier but more reliable than ads.
Sharing what you have learned helps others and sharpens your own understanding as well.
"""),
    link_sentences=_lines("""
Further background can be found at {link}, which is a good place to continue reading.
If you want to dig deeper into {topic}, see {link} for more detail.
A helpful resource on this is {link}, which covers several of the points above.
Readers who want practical examples can turn to {link} as a next step.
More on {topic} is available via {link}.
"""),
)

_SWEDISH = Vocabulary(
    name="Swedish",
    titles=_lines("""
{Topic}: en praktisk guide
En tydlig introduktion till {topic}
Det här bör du veta om {topic}
Kom igång med {topic}
{Topic} steg för steg
Så förstår du {topic}
"""),
    headings=_lines("""
Varför det spelar roll
Var ska man börja?
Vanliga misstag att undvika
Planering och budget
Att lära av andra
Att mäta framsteg
Att välja rätt metod
Blicken framåt
"""),
    sentences=_lines("""
{Topic} är ett av de ämnen som ser enkla ut på avstånd men blir rikare på nära håll.
De flesta möter {topic} först genom ett praktiskt problem snarare än av ren nyfikenhet.
En bra början är att skilja på det man faktiskt vet och det man bara antar.
Små, regelbundna steg fungerar oftast bättre än en stor insats som aldrig upprepas.
Det hjälper att skriva ner ett tydligt mål innan man jämför alternativ eller samlar råd.
Den som arbetat länge med {topic} är oftast överens med andra om grunderna.
Detaljerna spelar roll, men först när grunderna är på plats och väl förstådda.
Många vanliga misstag beror på att man kopierar en metod utan att förstå varför den fungerar.
Vid tvekan är det klokt att pröva en idé i liten skala innan man satsar mer tid eller pengar.
Bra källor förklarar sina resonemang, medger osäkerhet och visar var siffrorna kommer ifrån.
Kostnaderna för {topic} är lätta att underskatta, särskilt tiden för underhåll längre fram.
En enkel checklista kan förhindra de vanligaste förbiseendena utan att sakta ner arbetet.
Det lönar sig att fråga dem som gjort det förut vad de skulle ändra i efterhand.
Sammanhanget avgör mycket, så råd som fungerar på ett ställe kan slå fel på ett annat.
Med tiden framträder mönster som gör senare beslut om {topic} betydligt enklare.
Korta anteckningar om vad som fungerade och inte förvandlar erfarenhet till kunskap.
Det finns sällan ett enda rätt svar, men det finns gott om tydligt felaktiga.
Kvalitet syns oftast i små saker som ingen lägger märke till förrän de saknas.
God framförhållning ger utrymme att justera när förutsättningarna ändras, vilket de brukar.
En realistisk budget har marginal för överraskningar i stället för att räkna med att allt går bra.
Det nyaste alternativet är inte alltid det bästa, och det billigaste blir sällan billigast.
Intresset för {topic} har vuxit stadigt, och mängden råd har vuxit i samma takt.
Det överflödet är användbart, men det gör det också svårare att skilja bra råd från brus.
Pålitliga råd är ofta konkreta, försiktiga i sina påståenden och öppna med sina begränsningar.
Nybörjare har mest nytta av några tydliga regler som de kan följa konsekvent.
Senare kan reglerna lättas upp i takt med att omdöme och självförtroende växer.
Säkerhet och hållbarhet förtjänar uppmärksamhet redan från första steget, inte i efterhand.
Att prata med andra som bryr sig om {topic} är ett av de snabbaste sätten att lära sig.
Lokala föreningar, forum och kurser delar ofta lärdomar som är svåra att hitta någon annanstans.
Även ett kort samtal kan spara timmar av försök och misstag.
Att mäta resultaten, om än grovt, visar om ett arbetssätt verkligen lönar sig.
Om det inte gör det blir orsaken lättare att hitta om man ändrar en sak i taget.
Tålamod är underskattat: många förbättringar inom {topic} syns först efter några veckor.
I slutändan är det bästa arbetssättet det som passar ens situation och som man håller fast vid.
Med en tydlig plan och lite nyfikenhet blir {topic} mycket mindre överväldigande än det verkar.
Varje litet framsteg bygger upp självförtroendet inför nästa, lite större steg.
Tydliga prioriteringar gör det lättare att tacka nej till det som bara verkar brådskande.
Verktyg hjälper, men de ersätter sällan en sund metod och lite övning.
De flesta motgångar är tillfälliga, och många lär en mer än en enkel framgång skulle göra.
Att fråga någon till kostar lite jämfört med ett misstag som hade gått att undvika.
Den som tycker om {topic} säger ofta att själva lärandet är en del av belöningen.
Årstider och lokala förhållanden kan ändra vad som är rimligt från en månad till nästa.
Information från tillverkare och myndigheter är ofta torrare men mer pålitlig än reklam.
Att dela med sig av det man lärt sig hjälper andra och skärper den egna förståelsen.
"""),
    link_sentences=_lines("""
Mer bakgrund finns hos {link}, som är ett bra ställe att fortsätta läsa på.
Den som vill fördjupa sig i {topic} kan läsa mer på {link}.
En användbar resurs här är {link}, som tar upp flera av punkterna ovan.
Läsare som vill ha praktiska exempel kan gå vidare till {link}.
Mer om {topic} finns att läsa via {link}.
"""),
)

_GERMAN = Vocabulary(
    name="German",
    titles=_lines("""
{Topic}: ein praktischer Leitfaden
Eine klare Einführung in das Thema {topic}
Was man über {topic} wissen sollte
Der Einstieg in das Thema {topic}
{Topic} Schritt für Schritt erklärt
{Topic} richtig verstehen
"""),
    headings=_lines("""
Warum es wichtig ist
Wo man anfängt
Häufige Fehler vermeiden
Planung und Budget
Von anderen lernen
Fortschritte messen
Den passenden Ansatz wählen
Ein Blick nach vorn
"""),
    sentences=_lines("""
Das Thema {topic} wirkt aus der Ferne einfach und wird bei näherem Hinsehen immer reicher.
Die meisten begegnen dem Thema {topic} zuerst über ein praktisches Problem, nicht aus Neugier.
Ein guter Anfang ist es, das eigene Wissen von bloßen Annahmen zu trennen.
Kleine, regelmäßige Schritte sind meist besser als ein großer Kraftakt, der sich nie wiederholt.
Es hilft, ein klares Ziel aufzuschreiben, bevor man Angebote vergleicht oder Rat einholt.
Wer sich lange mit {topic} beschäftigt, ist sich mit anderen bei den Grundlagen meist einig.
Die Details zählen, aber erst dann, wenn die Grundlagen sitzen und gut verstanden sind.
Viele typische Fehler entstehen, wenn man eine Methode kopiert, ohne sie zu verstehen.
Im Zweifel lohnt es sich, eine Idee erst im Kleinen zu testen, bevor man mehr Zeit investiert.
Gute Quellen begründen ihre Aussagen, benennen Unsicherheiten und zeigen, woher Zahlen stammen.
Die Kosten rund um {topic} werden leicht unterschätzt, vor allem der spätere Pflegeaufwand.
Eine einfache Checkliste verhindert die häufigsten Versäumnisse, ohne die Arbeit zu bremsen.
Es lohnt sich, erfahrene Leute zu fragen, was sie im Nachhinein anders machen würden.
Der Zusammenhang ist entscheidend, denn ein Rat, der hier funktioniert, kann anderswo scheitern.
Mit der Zeit zeigen sich Muster, die spätere Entscheidungen zum Thema {topic} erleichtern.
Kurze Notizen darüber, was funktioniert hat und was nicht, machen aus Erfahrung echtes Wissen.
Es gibt selten die eine richtige Antwort, aber durchaus viele eindeutig falsche.
Qualität zeigt sich meist in Kleinigkeiten, die erst auffallen, wenn sie fehlen.
Wer vorausplant, hat Spielraum, wenn sich die Umstände ändern, und das tun sie fast immer.
Ein realistisches Budget enthält einen Puffer für Überraschungen, statt auf das Beste zu hoffen.
Die neueste Lösung ist nicht immer die beste, und die billigste ist selten die günstigste.
Das Interesse an {topic} ist stetig gewachsen, und mit ihm die Menge an Ratschlägen.
Diese Fülle ist nützlich, macht es aber schwerer, solide Hinweise von Rauschen zu unterscheiden.
Verlässliche Ratschläge sind meist konkret, zurückhaltend und offen über ihre Grenzen.
Einsteiger profitieren am meisten von wenigen klaren Regeln, die sie konsequent befolgen.
Später lassen sich diese Regeln lockern, sobald Urteilsvermögen und Sicherheit wachsen.
Sicherheit und Nachhaltigkeit verdienen vom ersten Schritt an Aufmerksamkeit, nicht erst später.
Der Austausch mit anderen, die sich für {topic} begeistern, ist ein schneller Weg zum Lernen.
Vereine, Foren und Kurse vor Ort teilen oft Erfahrungen, die man sonst kaum findet.
Schon ein kurzes Gespräch kann Stunden an Versuch und Irrtum ersparen.
Wer Ergebnisse misst, und sei es nur grob, sieht, ob sich ein Vorgehen wirklich lohnt.
Wenn nicht, hilft es, immer nur eine Sache zu ändern, damit sich die Ursache leichter findet.
Geduld wird unterschätzt: Viele Fortschritte beim Thema {topic} zeigen sich erst nach Wochen.
Am Ende ist der beste Ansatz derjenige, der zur eigenen Lage passt und den man durchhält.
Mit einem klaren Plan und etwas Neugier wirkt {topic} viel weniger einschüchternd als gedacht.
Jeder kleine Erfolg stärkt das Vertrauen für den nächsten, etwas größeren Schritt.
Klare Prioritäten machen es leichter, Ablenkungen abzulehnen, die nur dringend wirken.
Werkzeuge helfen, ersetzen aber selten eine solide Methode und etwas Übung.
Die meisten Rückschläge sind vorübergehend, und viele lehren mehr als ein leichter Erfolg.
Eine zweite Meinung kostet wenig im Vergleich zu einem Fehler, der vermeidbar gewesen wäre.
Wer Freude an {topic} hat, sagt oft, dass schon das Lernen ein Teil des Lohns ist.
Jahreszeiten und örtliche Bedingungen können verändern, was von Monat zu Monat sinnvoll ist.
Unterlagen von Herstellern und Behörden sind oft trockener, aber verlässlicher als Werbung.
Wer sein Wissen teilt, hilft anderen und schärft dabei auch das eigene Verständnis.
"""),
    link_sentences=_lines("""
Weitere Hintergründe bietet {link}, ein guter Ort, um weiterzulesen.
Wer tiefer in das Thema {topic} einsteigen möchte, findet bei {link} mehr Details.
Eine hilfreiche Quelle dazu ist {link}, wo viele der genannten Punkte vertieft werden.
Praktische Beispiele finden Leser unter {link}.
Mehr zum Thema {topic} gibt es über {link}.
"""),
)

#: Vocabularies by ISO 639-1 code; the keys are the languages the writer supports.
VOCABULARIES: Final[dict[str, Vocabulary]] = {"en": _ENGLISH, "sv": _SWEDISH, "de": _GERMAN}
SUPPORTED_LANGUAGES: Final[tuple[str, ...]] = tuple(sorted(VOCABULARIES))
