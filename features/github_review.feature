Feature: A reviewer approves the generated pull request and main's head verifies
  On GitHub, merge buttons sign with GitHub's own key, which Flux must not
  trust. The pipeline opens the pull request; once a reviewer approves it,
  `merge` fast-forwards main to the very commit they approved, signed by the
  fleet's key.

  Scenario: An approved pull request becomes main, signed by a trusted key
    Given an empty fleet hosted on GitHub as "acme/fleet"
    When I run new-cluster "web" for review on GitHub
    Then the run succeeds
    And GitHub has one open pull request from "cluster/web" that describes the network
    And main is the fleet's signed first commit, its GitRepository at the address Flux fetches it from
    And main declares the management cluster's Cluster API providers, and verifies
    When I run new-cluster "web" for review on GitHub
    Then the run succeeds
    And GitHub still has one pull request from "cluster/web", not updated
    And main is still the fleet's first commit
    When the spec for "web" asks for 3 replicas in pool "default"
    And GitHub refuses the next edit of a pull request
    And I run new-cluster "web" for review on GitHub
    Then the run fails at the review stage after pushing the new head
    When I run new-cluster "web" for review on GitHub on a fresh runner, with an empty state dir and the same bucket
    Then the run succeeds
    And it said it resumes from the failed run, and took the network as that run left it
    And the pull request's title and body describe its head, which the run did not move
    When I run merge "web"
    Then the run is blocked because the pull request is not approved
    When a reviewer approves the pull request at its head
    And I run merge "web"
    Then the run succeeds
    And main's head is the approved commit
    And main holds a commit signed by a trusted key
    And no secret the runs were given appears anywhere they wrote
