//! The demo catalogue a fresh development database starts with, so `GET /` has something to
//! return. The seed's own example (`Frozen` by `Disney`) comes first.

use crate::{
    db::{Database, Lock},
    domain::film::{self, FilmName, NewFilm, ReleaseYear, StudioName},
};

const DEMO_FILMS: [(&str, &str, i64); 20] = [
    ("Frozen", "Disney", 2013),
    ("Toy Story", "Pixar", 1995),
    ("Spirited Away", "Studio Ghibli", 2001),
    ("My Neighbor Totoro", "Studio Ghibli", 1988),
    ("The Lion King", "Disney", 1994),
    ("Finding Nemo", "Pixar", 2003),
    ("Up", "Pixar", 2009),
    ("WALL-E", "Pixar", 2008),
    ("Inside Out", "Pixar", 2015),
    ("Coco", "Pixar", 2017),
    ("Moana", "Disney", 2016),
    ("Zootopia", "Disney", 2016),
    ("Shrek", "DreamWorks Animation", 2001),
    ("How to Train Your Dragon", "DreamWorks Animation", 2010),
    ("Chicken Run", "Aardman Animations", 2000),
    (
        "Wallace & Gromit: The Curse of the Were-Rabbit",
        "Aardman Animations",
        2005,
    ),
    ("Princess Mononoke", "Studio Ghibli", 1997),
    (
        "Spider-Man: Into the Spider-Verse",
        "Sony Pictures Animation",
        2018,
    ),
    ("The Iron Giant", "Warner Bros. Animation", 1999),
    ("Kiki's Delivery Service", "Studio Ghibli", 1989),
];

/// Inserts the demo films if the catalogue is empty; returns how many were added. Instances
/// starting together on one database seed it once: each waits for the others' check and
/// insert (`Lock::DemoCatalogue`).
pub async fn seed_demo_films(db: &Database) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    tx.lock(Lock::DemoCatalogue).await?;
    if film::count(&mut tx).await? > 0 {
        return Ok(0);
    }
    let films = DEMO_FILMS
        .iter()
        .map(|&(name, studio, year)| {
            Ok(NewFilm {
                name: FilmName::parse(name.to_owned())?,
                studio: StudioName::parse(studio.to_owned())?,
                year: Some(ReleaseYear::parse(year)?),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let curated: Vec<_> = films.iter().map(|film| (film, None)).collect();
    film::insert_all(&mut tx, &curated).await?;
    tx.commit().await?;
    Ok(DEMO_FILMS.len())
}
