"""French text of the pages, by their English text (see :mod:`prodtype.web.i18n`).

``tests/web/test_french.py`` fails when a string the pages show has no entry here. Placeholders
(``%(name)s``) are kept as they are.
"""

from __future__ import annotations

FRENCH: dict[str, str] = {
    # -- words the pages show from data: roles, statuses of predictions, models, retrains, bulk jobs
    "customer": "client",
    "reviewer": "relecteur",
    "admin": "administrateur",
    "pending": "en attente",
    "accepted": "accepté",
    "rejected": "rejeté",
    "champion": "champion",
    "challenger": "challenger",
    "rolled_back": "retiré",
    "registered": "enregistré",
    "running": "en cours",
    "succeeded": "réussi",
    "failed": "échoué",
    "queued": "en file d'attente",
    "done": "terminé",
    # the steps of a retrain (prodtype.loop.retrain.STEPS, and the job's first step)
    "starting": "démarrage",
    "check": "vérification",
    "export": "export des relectures",
    "train": "entraînement",
    "evaluate": "évaluation",
    "register": "enregistrement",
    "promote": "promotion",
    # chart axes
    "day (UTC)": "jour (UTC)",
    "accepted unchanged": "acceptées sans changement",
    "predictions": "prédictions",
    "product type (code)": "type de produit (code)",
    "share of products": "part des produits",
    "F1 by product type": "F1 par type de produit",
    "difference": "différence",
    # -- the header, shared words
    "Submit a product": "Soumettre un produit",
    "Bulk": "En masse",
    "My predictions": "Mes prédictions",
    "Review queue": "File de relecture",
    "Monitoring": "Suivi",
    "Models": "Modèles",
    "Retraining": "Réentraînement",
    "Accounts": "Comptes",
    "Log out": "Se déconnecter",
    "Log in": "Se connecter",
    "Back to the start page": "Retour à la page d'accueil",
    "Not found": "Introuvable",
    "Not allowed": "Accès refusé",
    "Not ready": "Pas encore prêt",
    "Not logged out": "Déconnexion impossible",
    "This page is for %(roles)s; you are logged in as %(user)s (%(role)s)": (
        "Cette page est réservée aux rôles %(roles)s ; vous êtes connecté en tant que %(user)s (%(role)s)"
    ),
    "Pages": "Pages",
    "Previous": "Précédente",
    "Next": "Suivante",
    "Page %(page)s of %(pages)s": "Page %(page)s sur %(pages)s",
    # -- log in
    "You are logged in as %(user)s.": "Vous êtes connecté en tant que %(user)s.",
    "Continue": "Continuer",
    "or log in as someone else.": "ou connectez-vous sous un autre nom.",
    "Username": "Nom d'utilisateur",
    "Password": "Mot de passe",
    "enter your username and your password": "saisissez votre nom d'utilisateur et votre mot de passe",
    # -- submit a product, a prediction, my predictions
    "Give the product's title, and its description and photo if you have them: the model suggests one of "
    "the catalogue's product types, which a reviewer then confirms.": (
        "Donnez le titre du produit, et sa description et sa photo si vous les avez : le modèle propose un "
        "des types de produit du catalogue, qu'un relecteur confirme ensuite."
    ),
    "Title": "Titre",
    "designation": "désignation",
    "Description": "Description",
    "optional": "facultatif",
    "Photo": "Photo",
    "optional · JPEG, PNG or WebP, at most %(mb)s MB": "facultative · JPEG, PNG ou WebP, %(mb)s Mo au plus",
    "The chosen photo": "La photo choisie",
    "Predict the product type": "Prédire le type de produit",
    "Predicting…": "Prédiction…",
    "The photo is %(size)s MB; at most %(limit)s MB is accepted.": (
        "La photo fait %(size)s Mo ; %(limit)s Mo au plus sont acceptés."
    ),
    "The file “%(name)s” is not a JPEG, PNG or WebP photo.": (
        "Le fichier « %(name)s » n'est pas une photo JPEG, PNG ou WebP."
    ),
    "the classifier is not available right now (no model is loaded); try again in a few minutes": (
        "le classifieur n'est pas disponible pour l'instant (aucun modèle n'est chargé) ; réessayez dans "
        "quelques minutes"
    ),
    "Prediction #%(id)s": "Prédiction n° %(id)s",
    "Photo of the product": "Photo du produit",
    "Predicted product type": "Type de produit prédit",
    "Confidence": "Confiance",
    "Status": "Statut",
    "final type": "type final",
    "reviewed by %(user)s": "relu par %(user)s",
    "Top %(n)s product types": "Les %(n)s types de produit les plus probables",
    "Product type": "Type de produit",
    "Code": "Code",
    "Probability": "Probabilité",
    "Product": "Produit",
    "Submitted": "Soumis",
    "%(when)s by %(user)s": "%(when)s par %(user)s",
    "Model": "Modèle",
    "Submit another product": "Soumettre un autre produit",
    "Nothing yet.": "Rien pour l'instant.",
    "to get its product type.": "pour obtenir son type.",
    "Predicted type": "Type prédit",
    "corrected to %(name)s (%(code)s)": "corrigé en %(name)s (%(code)s)",
    # -- review queue
    "Pending predictions, lowest confidence first. Accept the predicted type, pick the right one, or reject "
    "a product that cannot be classified.": (
        "Prédictions en attente, les moins sûres d'abord. Acceptez le type prédit, choisissez le bon, ou "
        "rejetez un produit qui ne peut pas être classé."
    ),
    "all": "tous",
    "any": "toute",
    "Confidence below": "Confiance inférieure à",
    "Filter": "Filtrer",
    "Clear filters": "Effacer les filtres",
    "Keyboard shortcuts": "Raccourcis clavier",
    "accept the predicted type": "accepter le type prédit",
    "save candidate 1 to 5 as the right type": "enregistrer le candidat 1 à 5 comme bon type",
    "reject (asks first)": "rejeter (après confirmation)",
    "next product": "produit suivant",
    "previous product": "produit précédent",
    "enlarge the photo": "agrandir la photo",
    "Nothing to review.": "Rien à relire.",
    "Enlarge the photo": "Agrandir la photo",
    "no photo": "pas de photo",
    "Description (%(n)s characters)": "Description (%(n)s caractères)",
    "by": "par",
    "Accept": "Accepter",
    "or the right type": "ou le bon type",
    "choose…": "choisir…",
    "The model's candidates": "Les candidats du modèle",
    "All product types": "Tous les types de produit",
    "Save corrected type": "Enregistrer le type corrigé",
    "Reject": "Rejeter",
    "Reject this prediction? It leaves the queue.": "Rejeter cette prédiction ? Elle quitte la file.",
    "Close": "Fermer",
    "Prediction #%(id)s rejected.": "Prédiction n° %(id)s rejetée.",
    "Prediction #%(id)s accepted: %(name)s (%(code)s).": (
        "Prédiction n° %(id)s acceptée : %(name)s (%(code)s)."
    ),
    "Prediction #%(id)s corrected: %(name)s (%(code)s).": (
        "Prédiction n° %(id)s corrigée : %(name)s (%(code)s)."
    ),
    # -- monitoring
    "The last %(n)s days (UTC).": "Les %(n)s derniers jours (UTC).",
    "%(n)s days": "%(n)s jours",
    "Live accuracy": "Exactitude en service",
    "%(n)s reviews; alert below %(t)s": "%(n)s relectures ; alerte sous %(t)s",
    "Predictions": "Prédictions",
    "Awaiting review": "En attente de relecture",
    "%(n)s rejected in all": "%(n)s rejetées au total",
    "Class shift (PSI)": "Dérive des classes (PSI)",
    "no predictions or no training labels": "pas de prédictions ou pas d'étiquettes d'entraînement",
    "no predictions": "pas de prédictions",
    "total variation %(t)s; above 0.25 is usually a real shift": (
        "variation totale %(t)s ; au-delà de 0,25 la dérive est en général réelle"
    ),
    "No reviews in this window.": "Aucune relecture sur cette période.",
    "No predictions in this window.": "Aucune prédiction sur cette période.",
    "Live accuracy by day: accepted unchanged / reviewed": (
        "Exactitude en service par jour : acceptées telles quelles / relues"
    ),
    "Predictions per day": "Prédictions par jour",
    "predicted": "prédit",
    "training labels": "étiquettes d'entraînement",
    "Predicted class mix against the training mix": (
        "Répartition des classes prédites face à celle de l'entraînement"
    ),
    # -- accounts
    "New account": "Nouveau compte",
    "Role": "Rôle",
    "Create": "Créer",
    "State": "État",
    "Created": "Créé",
    "Change": "Changer",
    "Enable %(user)s?": "Réactiver %(user)s ?",
    "Disable %(user)s? Their sessions are closed.": "Désactiver %(user)s ? Ses sessions sont fermées.",
    "disabled": "désactivé",
    "Enable": "Réactiver",
    "active": "actif",
    "Disable": "Désactiver",
    "New password": "Nouveau mot de passe",
    "Reset": "Réinitialiser",
    "%(user)s is now %(role)s.": "%(user)s est maintenant %(role)s.",
    "%(user)s is disabled.": "%(user)s est désactivé.",
    "%(user)s is enabled.": "%(user)s est réactivé.",
    "The password of %(user)s was changed; their sessions are closed.": (
        "Le mot de passe de %(user)s a été changé ; ses sessions sont fermées."
    ),
    # -- models
    "Champion": "Champion",
    "This service answers with": "Ce service répond avec",
    "no model loaded": "aucun modèle chargé",
    "No model is registered yet: a retrain registers one.": (
        "Aucun modèle n'est encore enregistré : un réentraînement en enregistre un."
    ),
    "Version": "Version",
    "Weighted F1": "F1 pondéré",
    "Macro F1": "F1 macro",
    "Why": "Pourquoi",
    "Registered": "Enregistré",
    "serving": "en service",
    "Make version %(v)s the champion? Every service switches to it.": (
        "Faire de la version %(v)s le champion ? Tous les services passent à elle."
    ),
    "Promote": "Promouvoir",
    "Give the champion back to the previous one? Every service switches to it.": (
        "Rendre la place de champion au précédent ? Tous les services passent à lui."
    ),
    "Roll back to the previous champion, because": "Revenir au champion précédent, parce que",
    "Roll back": "Revenir en arrière",
    "Which classes gain, which lose": "Quelles classes gagnent, lesquelles perdent",
    "Version %(v)s has no per-class evaluation.": "La version %(v)s n'a pas d'évaluation par classe.",
    "Per-class F1: version %(a)s against the champion (version %(b)s)": (
        "F1 par classe : version %(a)s face au champion (version %(b)s)"
    ),
    "version %(v)s": "version %(v)s",
    "Version %(v)s is the champion; the service switches to it in the background.": (
        "La version %(v)s est le champion ; le service passe à elle en arrière-plan."
    ),
    "Rolled back: version %(v)s is the champion again.": (
        "Retour arrière : la version %(v)s est de nouveau le champion."
    ),
    # -- retraining
    "New reviewed products": "Nouveaux produits relus",
    "threshold %(n)s": "seuil %(n)s",
    "over %(n)s reviews; threshold %(t)s (from %(m)s reviews)": (
        "sur %(n)s relectures ; seuil %(t)s (à partir de %(m)s relectures)"
    ),
    "Should retrain": "Réentraînement conseillé",
    "yes": "oui",
    "no": "non",
    "Start a retrain now? It takes minutes; one runs at a time.": (
        "Lancer un réentraînement maintenant ? Il prend quelques minutes ; un seul à la fois."
    ),
    "Retrain now": "Réentraîner maintenant",
    "A retrain is running.": "Un réentraînement est en cours.",
    "Job": "Tâche",
    "step": "étape",
    "Last jobs": "Dernières tâches",
    "No retrain has run from this service yet.": (
        "Aucun réentraînement n'a encore été lancé depuis ce service."
    ),
    "Step": "Étape",
    "By": "Par",
    "Started": "Lancé",
    "Outcome": "Résultat",
    "End of the log": "Fin du journal",
    # -- bulk classification
    "Bulk classification": "Classement en masse",
    "Upload a CSV in the challenge's X format, with a zip of the photos if you have them: every product is "
    "classified in the background and lands in the review queue. Rows that cannot be read are listed with "
    "their line and the reason; the others are still classified.": (
        "Envoyez un CSV au format X du challenge, avec un zip des photos si vous les avez : chaque produit "
        "est classé en arrière-plan et rejoint la file de relecture. Les lignes illisibles sont listées avec "
        "leur numéro et la raison ; les autres sont classées quand même."
    ),
    "Products": "Produits",
    "CSV, UTF-8, header ,designation,description,productid,imageid; at most %(rows)s rows and %(mb)s MB": (
        "CSV, UTF-8, en-tête ,designation,description,productid,imageid ; "
        "%(rows)s lignes et %(mb)s Mo au plus"
    ),
    "Photos": "Photos",
    "optional · a zip of image_<imageid>_product_<productid>.jpg files (JPEG or PNG), at most %(mb)s MB": (
        "facultatif · un zip de fichiers image_<imageid>_product_<productid>.jpg (JPEG ou PNG), "
        "%(mb)s Mo au plus"
    ),
    "Classify the file": "Classer le fichier",
    "Your last jobs": "Vos dernières tâches",
    "No bulk job yet.": "Aucune tâche de classement pour l'instant.",
    "File": "Fichier",
    "Rows": "Lignes",
    "Classified": "Classées",
    "Bad rows": "Lignes refusées",
    "Choose a CSV file of products.": "Choisissez un fichier CSV de produits.",
    "Bulk job": "Tâche de classement en masse",
    "rows done": "lignes traitées",
    "%(n)s classified, %(b)s bad rows, %(p)s with a photo": (
        "%(n)s classées, %(b)s lignes refusées, %(p)s avec une photo"
    ),
    "submitted by %(user)s, %(when)s": "soumise par %(user)s, %(when)s",
    "Download the result (CSV)": "Télécharger le résultat (CSV)",
    "Line": "Ligne",
    "Index": "Index",
    "Reason": "Raison",
    "Classify another file": "Classer un autre fichier",
    # explanations
    "Each part of the model's share of the decision between the two types (log-odds)": (
        "La part de chaque partie du modèle dans la décision entre les deux types (log-cotes)"
    ),
    "Explained by model": "Expliqué par le modèle",
    "Marked words pushed toward": "Les mots marqués ont poussé vers",
    "No explanation right now:": "Pas d'explication pour le moment :",
    "The photo disagreed: on its own it points to": "La photo n'était pas d'accord : seule, elle désigne",
    "Why did the model say so?": "Pourquoi le modèle a-t-il dit cela ?",
    "Why the model said so": "Pourquoi le modèle a dit cela",
    "alone:": "seule :",
    "or toward the runner-up": "ou vers le deuxième choix",
    # shadow evaluation and the model card (models page)
    "95 % interval": "intervalle à 95 %",
    "A candidate is promoted only with at least %(n)s reviewed products answered in shadow and a live "
    "accuracy at most %(d)s below the champion's on them.": (
        "Un candidat n'est promu qu'avec au moins %(n)s produits relus auxquels il a répondu dans l'ombre, "
        "et une exactitude en production inférieure d'au plus %(d)s à celle du champion sur ces produits."
    ),
    "Difference (paired)": "Différence (appariée)",
    "Markdown": "Markdown",
    "Model card of version %(v)s": "Fiche du modèle, version %(v)s",
    "No reviewed product has an answer of version %(v)s yet.": (
        "Aucun produit relu n'a encore de réponse de la version %(v)s."
    ),
    "No version runs in shadow. Put one there with its Shadow button.": (
        "Aucune version ne tourne dans l'ombre. Mettez-en une avec son bouton Ombre."
    ),
    "No version was in shadow.": "Aucune version n'était dans l'ombre.",
    "Promotion does not require live figures (PRODTYPE_PROMOTION_REQUIRE_LIVE is off).": (
        "La promotion n'exige pas de chiffres en production (PRODTYPE_PROMOTION_REQUIRE_LIVE est désactivé)."
    ),
    "Reviewed products": "Produits relus",
    "Right": "Justes",
    "Score each new prediction with this version too, unseen": (
        "Faire aussi classer chaque nouvelle prédiction par cette version, sans que cela se voie"
    ),
    "Shadow": "Ombre",
    "Shadow evaluation on live traffic": "Évaluation dans l'ombre sur le trafic réel",
    "Stop the shadow": "Arrêter l'ombre",
    "The model card cannot be built now.": "La fiche du modèle ne peut pas être construite pour l'instant.",
    "The shadow figures cannot be read now.": "Les chiffres de l'ombre sont illisibles pour l'instant.",
    "This process: %(s)s scored, %(d)s dropped (queue full), %(f)s failed.": (
        "Ce processus : %(s)s classés, %(d)s abandonnés (file pleine), %(f)s en échec."
    ),
    "Version %(v)s no longer runs in shadow.": "La version %(v)s ne tourne plus dans l'ombre.",
    "Version %(v)s runs in shadow: each new prediction is also scored by it, off the request path, and "
    "its answer recorded beside the champion's.": (
        "La version %(v)s tourne dans l'ombre : chaque nouvelle prédiction est aussi classée par elle, hors "
        "du chemin de la requête, et sa réponse enregistrée à côté de celle du champion."
    ),
    "Version %(v)s runs in shadow: each new prediction is also scored by it.": (
        "La version %(v)s tourne dans l'ombre : chaque nouvelle prédiction est aussi classée par elle."
    ),
    "in shadow": "dans l'ombre",
}
