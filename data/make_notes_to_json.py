"""Generate the embedded default dataset: short contact notes -> a JSON record.

    python data/make_notes_to_json.py --out data/notes_to_json

The answer is exact and checkable (four fields), the base model is poor at the house format, and a
LoRA adapter learns it in minutes on a CPU. Deterministic: the same seed writes the same bytes,
and a test checks that the committed files are exactly this script's output.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

FIRST = [
    "Amara",
    "Liam",
    "Priya",
    "Mateo",
    "Yuki",
    "Noah",
    "Fatima",
    "Lukas",
    "Chloe",
    "Kwame",
    "Ingrid",
    "Diego",
    "Mei",
    "Omar",
    "Sofia",
    "Tariq",
    "Elena",
    "Hiro",
    "Zanele",
    "Pavel",
    "Aisha",
    "Jonas",
    "Lucia",
    "Ravi",
    "Nadia",
    "Tomas",
    "Grace",
    "Emeka",
    "Astrid",
    "Sami",
    "Leila",
    "Marco",
    "Anya",
    "Kofi",
    "Isabel",
    "Dmitri",
    "Hana",
    "Felix",
    "Rosa",
    "Arjun",
]
LAST = [
    "Okafor",
    "Murphy",
    "Sharma",
    "Garcia",
    "Tanaka",
    "Schmidt",
    "Haddad",
    "Novak",
    "Dubois",
    "Mensah",
    "Larsen",
    "Rossi",
    "Chen",
    "Farouk",
    "Silva",
    "Kowalski",
    "Nakamura",
    "Dlamini",
    "Petrov",
    "Ibrahim",
    "Berg",
    "Moreno",
    "Patel",
    "Costa",
    "Ahmed",
    "Horvat",
    "Kim",
    "Adeyemi",
    "Lindqvist",
    "Virtanen",
    "Mansour",
    "Bianchi",
    "Ivanova",
    "Boateng",
    "Ortiz",
    "Sokolov",
    "Yamada",
    "Weber",
    "Reyes",
    "Iyer",
]
CITIES = [
    "Lisbon",
    "Porto",
    "Nairobi",
    "Osaka",
    "Leeds",
    "Lyon",
    "Accra",
    "Krakow",
    "Bergen",
    "Seville",
    "Pune",
    "Tallinn",
    "Cork",
    "Dakar",
    "Utrecht",
    "Bologna",
    "Quito",
    "Gdansk",
    "Tampere",
    "Malmo",
    "Busan",
    "Cusco",
    "Tbilisi",
    "Hobart",
    "Windhoek",
    "Ghent",
    "Graz",
    "Lagos",
    "Riga",
    "Kyoto",
    "Bristol",
    "Valencia",
    "Mombasa",
    "Brno",
    "Aarhus",
    "Perth",
]
JOBS = [
    "nurse",
    "pharmacist",
    "carpenter",
    "data analyst",
    "teacher",
    "electrician",
    "architect",
    "baker",
    "paramedic",
    "lawyer",
    "plumber",
    "journalist",
    "dentist",
    "pilot",
    "librarian",
    "chef",
    "accountant",
    "translator",
    "welder",
    "veterinarian",
    "photographer",
    "surveyor",
    "midwife",
    "mechanic",
    "software engineer",
    "florist",
    "geologist",
    "tailor",
    "firefighter",
    "barista",
]
NOTES = [
    "{name}, {age}, is a {job} based in {city}.",
    "Met {name} today. {age} years old, works as a {job}, lives in {city}.",
    "New client: {name} ({age}), {job} from {city}.",
    "The {city} office called about {name}, who is {age} and works as a {job}.",
    "Follow up with {name} next week; {age}-year-old {job} in {city}.",
    "Booked a table for {name} ({job}, {age}), visiting from {city}.",
    "{name} moved to {city} last year and now works as a {job}. Age: {age}.",
    "Spoke with a {job} from {city} named {name}, aged {age}.",
]
EXTRAS = [
    "Prefers email.",
    "Call back on Monday.",
    "Interested in the premium plan.",
    "Allergic to peanuts.",
    "Referred by a colleague.",
    "",
    "",
    "",
]
INSTRUCTION = "Extract the contact from this note as JSON."


def make_example(rng: random.Random) -> dict[str, str]:
    person = {
        "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "age": rng.randint(19, 78),
        "city": rng.choice(CITIES),
        "occupation": rng.choice(JOBS),
    }
    note = rng.choice(NOTES).format(
        name=person["name"], age=person["age"], city=person["city"], job=person["occupation"]
    )
    extra = rng.choice(EXTRAS)
    note = f"{note} {extra}".strip()
    return {"instruction": INSTRUCTION, "input": note, "output": json.dumps(person)}


def generate(
    *, train_size: int, heldout_size: int, seed: int
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Unique notes, split so no held-out note (or person) appears in the training set."""
    rng = random.Random(seed)
    seen_notes: set[str] = set()
    seen_people: set[str] = set()
    rows: list[dict[str, str]] = []
    while len(rows) < train_size + heldout_size:
        row = make_example(rng)
        person = json.loads(row["output"])["name"]
        if row["input"] in seen_notes or person in seen_people:
            continue
        seen_notes.add(row["input"])
        seen_people.add(person)
        rows.append(row)
    return rows[:train_size], rows[train_size:]


def write_jsonl(rows: list[dict[str, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "notes_to_json")
    parser.add_argument("--train-size", type=int, default=128)
    parser.add_argument("--heldout-size", type=int, default=48)
    parser.add_argument("--seed", type=int, default=20261121)
    args = parser.parse_args(argv)
    train, heldout = generate(
        train_size=args.train_size, heldout_size=args.heldout_size, seed=args.seed
    )
    write_jsonl(train, args.out / "train.jsonl")
    write_jsonl(heldout, args.out / "heldout.jsonl")
    print(f"wrote {len(train)} train and {len(heldout)} held-out rows to {args.out}")


if __name__ == "__main__":
    main()
